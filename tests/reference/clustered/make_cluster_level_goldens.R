# Golden values for pipeline.stats.two_stage: two-stage cluster-level analysis
# (Hayes & Moulton) and the stratified permutation test with its interval by inversion.
# Run from this folder:  Rscript make_cluster_level_goldens.R
# Writes cluster_trials.csv and cluster_level_goldens.json. Needs survival, jsonlite.
suppressPackageStartupMessages({library(survival); library(jsonlite)})
options(digits = 17)
gold <- list(generated_by = "make_cluster_level_goldens.R", r_version = R.version.string,
             survival_version = as.character(packageVersion("survival")))

# ------------------------------------------------------------------ data (simulated)
# Two cluster-randomised trials: "paired" (7 sites, one cluster per arm per site) and
# "stratified" (4 sites, 2 clusters per arm per site). Per person: age, time to event
# (exponential, cluster log-frailty SD 0.3, censored at 2), a count over person-time and
# a 0/1 outcome, both with the cluster effect.
set.seed(20261125)
sim <- function(design, sites, per_arm) {
  out <- NULL; cid <- 0
  for (s in seq_len(sites)) {
    arms <- sample(rep(0:1, per_arm))
    for (a in arms) {
      cid <- cid + 1
      m <- sample(15:40, 1); u <- rnorm(1, 0, 0.3)
      age <- round(rnorm(m, 35, 10))
      rate <- exp(-0.5 + 0.02 * (age - 35) + u - 0.4 * a)
      t <- rexp(m, rate); cens <- runif(m, 0.5, 2)
      pt <- runif(m, 0.2, 2)
      out <- rbind(out, data.frame(design = design, site = sprintf("S%d", s),
        cluster = sprintf("%s-C%02d", substr(design, 1, 1), cid), arm = a, age = age,
        time = round(pmin(t, cens), 4), status = as.integer(t <= cens),
        count = rpois(m, pt * exp(log(0.8) + u - 0.3 * a + 0.01 * (age - 35))), pt = round(pt, 4),
        yb = rbinom(m, 1, plogis(-0.7 + u - 0.5 * a + 0.02 * (age - 35)))))
    }
  }
  out
}
dat <- rbind(sim("paired", 7, 1), sim("stratified", 4, 2))
write.csv(dat, "cluster_trials.csv", row.names = FALSE)
dat <- read.csv("cluster_trials.csv")

# ------------------------------------------------------------------ stage 1 + 2
stage2 <- function(cl, conf = 0.95) {
  fit <- lm(value ~ arm + factor(stratum), data = cl)
  s <- summary(fit)$coefficients["arm", ]
  ci <- confint(fit, "arm", level = conf)
  list(coef = unname(s[1]), se = unname(s[2]), df = fit$df.residual, t = unname(s[3]),
       p = unname(s[4]), lower = unname(ci[1]), upper = unname(ci[2]))
}
summarise <- function(d, E, scale) {
  d$E <- E
  d$O <- switch(scale$kind, survival = d$status, count = d$count, binary = d$yb)
  cl <- aggregate(cbind(O, E, m = 1) ~ cluster + site + arm, data = d, FUN = sum)
  names(cl)[names(cl) == "site"] <- "stratum"
  cl <- cl[order(cl$cluster), ]
  cl$value <- if (scale$scale == "ratio") log(cl$O / cl$E) else (cl$O - cl$E) / cl$m
  cl
}
cases <- list(
  survival_plain = list(kind = "survival", scale = "ratio", covariates = character(0)),
  survival_age = list(kind = "survival", scale = "ratio", covariates = "age"),
  count_age = list(kind = "count", scale = "ratio", covariates = "age"),
  binary_age = list(kind = "binary", scale = "difference", covariates = "age"),
  binary_ratio = list(kind = "binary", scale = "ratio", covariates = character(0)))
expected <- function(d, cs) {
  if (cs$kind == "survival") {
    f <- if (length(cs$covariates)) coxph(Surv(time, status) ~ age + strata(site), data = d,
                                            ties = "breslow", control = coxph.control(eps = 1e-12, toler.chol = 1e-14))
         else coxph(Surv(time, status) ~ strata(site), data = d, ties = "breslow")
    return(d$status - residuals(f, type = "martingale"))
  }
  fam <- if (cs$kind == "count") poisson else binomial
  fml <- if (cs$kind == "count") count ~ factor(site) + offset(log(pt)) else yb ~ factor(site)
  if (length(cs$covariates)) fml <- update(fml, . ~ . + age)
  fitted(glm(fml, family = fam, data = d, control = glm.control(epsilon = 1e-14, maxit = 100)))
}

# ------------------------------------------------------------------ permutation test
# Every allocation within site keeping each site's number of clusters per arm; the
# statistic is lm's arm coefficient, refitted for every allocation (no shortcut).
allocations <- function(cl) {
  per <- lapply(split(seq_len(nrow(cl)), cl$stratum), function(idx) {
    k <- sum(cl$arm[idx]); cmb <- combn(length(idx), k, simplify = FALSE)
    lapply(cmb, function(ch) { a <- integer(length(idx)); a[ch] <- 1L; list(idx = idx, a = a) })
  })
  grid <- expand.grid(lapply(per, seq_along))
  t(apply(grid, 1, function(row) { a <- integer(nrow(cl))
    for (j in seq_along(per)) { p <- per[[j]][[row[j]]]; a[p$idx] <- p$a }; a }))
}
arm_coef <- function(v, a, stratum) coef(lm.fit(cbind(1, a, model.matrix(~ factor(stratum))[, -1, drop = FALSE]), v))[2]
perm_p <- function(cl, A, delta) {
  v <- cl$value - delta * cl$arm
  tobs <- arm_coef(v, cl$arm, cl$stratum)
  ts <- apply(A, 1, function(a) arm_coef(v, a, cl$stratum))
  mean(abs(ts) >= abs(tobs) - 1e-10 * max(1, max(abs(ts))))
}
# interval ends by bisection on the accept/reject indicator, from the estimate outwards
ends <- function(cl, A, est, alpha = 0.05) {
  edge <- function(dir) {
    inside <- est; step <- 0.1
    outside <- est + dir * step
    while (perm_p(cl, A, outside) > alpha) { inside <- outside; step <- 2 * step; outside <- est + dir * step }
    for (i in 1:60) { mid <- (inside + outside) / 2
      if (perm_p(cl, A, mid) > alpha) inside <- mid else outside <- mid }
    (inside + outside) / 2
  }
  c(edge(-1), edge(1))
}

for (design in c("paired", "stratified")) {
  d <- dat[dat$design == design, ]
  for (nm in names(cases)) {
    cs <- cases[[nm]]
    cl <- summarise(d, expected(d, cs), cs)
    st <- stage2(cl)
    A <- allocations(cl)
    est <- st$coef
    p0 <- perm_p(cl, A, 0)
    ci <- if (nm %in% c("survival_age", "binary_age")) ends(cl, A, est) else c(NA, NA)
    gold[[paste(design, nm, sep = "_")]] <- c(list(design = design, kind = cs$kind, scale = cs$scale,
      covariates = cs$covariates, clusters = cl$cluster, observed = cl$O, expected = cl$E, value = cl$value,
      n_allocations = nrow(A), perm_p = p0, perm_lower = ci[1], perm_upper = ci[2]), st)
  }
}
writeLines(toJSON(gold, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), "cluster_level_goldens.json")
