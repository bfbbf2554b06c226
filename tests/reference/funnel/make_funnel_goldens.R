# Golden values for pipeline.stats.funnel (Spiegelhalter 2005 funnel plots).
# Run from this folder:  Rscript make_funnel_goldens.R
# Writes funnel_units.csv (simulated, fixed seed) and funnel_goldens.json.
#
# FunnelPlotR is not installed; its overdispersion steps are coded here from its source
# (R/od_adjustment.R: transformed_zscore, winsorisation, phi_func, tau_func):
#   z   = (Y - T) / s on the transformed scale:
#         proportion  Y = asin(sqrt(O/n)),  T = asin(sqrt(target)), s = 1 / (2 sqrt(n))
#         ratio       Y = sqrt(O/E),        T = sqrt(target),       s = 1 / (2 sqrt(E))
#         rate        Y = sqrt(O/PT),       T = sqrt(target),       s = 1 / (2 sqrt(PT))
#   z Winsorised at its 10% and 90% quantiles (type 7), phi = mean(z_w^2),
#   tau2 = 0 if n phi < n - 1, else (n phi - (n - 1)) / (sum(w) - sum(w^2) / sum(w)), w = 1/s^2.
# Limits:
#   unadjusted (or phi <= 1, as FunnelPlotR falls back): exact binomial / Poisson with
#     Spiegelhalter's (2005, appendix A.1.1) interpolation: r_p = qbinom(p, n, target)
#     (qpois(p, target * E)), alpha = (F(r_p) - p) / (F(r_p) - F(r_p - 1)),
#     limit = (r_p - alpha) / n, truncated to [0, 1] (proportion) or at 0.
#   additive:       back-transform of T +/- z_p sqrt(s^2 + tau2)
#   multiplicative: back-transform of T +/- z_p sqrt(phi) s
#   back-transform: sin(x)^2 (x clamped to [0, pi/2]) for proportions, x^2 (x >= 0) otherwise.
# Flags compare the value with the limits used: high_998 > upper 99.8 % >= high_95 >
# upper 95 %; symmetric below; otherwise within (limits inclusive, as FunnelPlotR).
library(jsonlite)
options(digits = 17)

set.seed(2005)
k <- 30
n <- sample(20:900, k)
prop_obs <- rbinom(k, n, plogis(qlogis(0.12) + rnorm(k, 0, 0.3)))
E <- round(runif(k, 3, 250), 2)
ratio_obs <- rpois(k, E * exp(rnorm(k, 0, 0.25)))
PT <- round(runif(k, 200, 9000), 1)
rate_obs <- rpois(k, 0.015 * PT * exp(rnorm(k, 0, 0.35)))
units <- rbind(
  data.frame(kind = "proportion", label = sprintf("H%02d", 1:k), observed = prop_obs, denominator = n),
  data.frame(kind = "ratio", label = sprintf("H%02d", 1:k), observed = ratio_obs, denominator = E),
  data.frame(kind = "rate", label = sprintf("H%02d", 1:k), observed = rate_obs, denominator = PT))
# a unit with zero events, for the truncated lower limits
units$observed[units$kind == "proportion" & units$label == "H07"] <- 0
write.csv(units, "funnel_units.csv", row.names = FALSE)

exact_limit <- function(p, kind, d, target) {
  if (kind == "proportion") {
    r <- qbinom(p, d, target); F <- function(x) pbinom(x, d, target)
  } else {
    r <- qpois(p, target * d); F <- function(x) ppois(x, target * d)
  }
  alpha <- (F(r) - p) / (F(r) - F(r - 1))
  lim <- (r - alpha) / d
  lim <- pmax(lim, 0)
  if (kind == "proportion") lim <- pmin(lim, 1)
  list(limit = lim, r = r)
}

funnel_gold <- function(kind, O, D, target = NULL, od = "none") {
  if (is.null(target)) target <- if (kind == "ratio") 1 else sum(O) / sum(D)
  value <- O / D
  if (kind == "proportion") {
    Y <- asin(sqrt(value)); T <- asin(sqrt(target))
    back <- function(x) sin(pmin(pmax(x, 0), pi / 2))^2
  } else {
    Y <- sqrt(value); T <- sqrt(target)
    back <- function(x) pmax(x, 0)^2
  }
  s <- 1 / (2 * sqrt(D))
  z <- (Y - T) / s
  lz <- quantile(z, 0.1); uz <- quantile(z, 0.9)
  zw <- ifelse(z < lz, lz, ifelse(z > uz, uz, z))
  nn <- length(z)
  phi <- sum(zw^2) / nn
  w <- 1 / s^2
  tau2 <- if (nn * phi < nn - 1) 0 else max(0, (nn * phi - (nn - 1)) / (sum(w) - sum(w^2) / sum(w)))
  use <- od
  if (od != "none" && phi <= 1) use <- "none"
  lims <- list(); rs <- list()
  for (pr in list(c("lower_95", 0.025), c("upper_95", 0.975), c("lower_998", 0.001), c("upper_998", 0.999))) {
    p <- as.numeric(pr[2])
    if (use == "none") {
      el <- exact_limit(p, kind, D, target); lims[[pr[1]]] <- el$limit; rs[[pr[1]]] <- el$r
    } else {
      zp <- qnorm(p)
      sd <- if (use == "additive") sqrt(s^2 + tau2) else sqrt(phi) * s
      lims[[pr[1]]] <- back(T + zp * sd)
    }
  }
  flag <- ifelse(value > lims$upper_998, "high_998", ifelse(value > lims$upper_95, "high_95",
          ifelse(value < lims$lower_998, "low_998", ifelse(value < lims$lower_95, "low_95", "within"))))
  c(list(kind = kind, overdispersion = od, limits_used = use, target = target, phi = phi,
         tau2 = tau2, value = value, z = z, flag = flag, exact_quantiles = rs), lims)
}

cases <- list()
for (kind in c("proportion", "ratio", "rate")) {
  u <- units[units$kind == kind, ]
  for (od in c("none", "multiplicative", "additive")) {
    cases[[length(cases) + 1]] <- funnel_gold(kind, u$observed, u$denominator, od = od)
  }
}
# a given target (e.g. a national benchmark)
u <- units[units$kind == "proportion", ]
g <- funnel_gold("proportion", u$observed, u$denominator, target = 0.1, od = "none")
g$target_given <- TRUE
cases[[length(cases) + 1]] <- g

writeLines(toJSON(list(generated_by = "make_funnel_goldens.R", r_version = R.version.string,
                       cases = cases), digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "funnel_goldens.json")
