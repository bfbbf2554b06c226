# Golden values for pipeline.stats.rates, .binary and .tableone.
# Run from this folder:  Rscript make_effects_goldens.R
# Writes the input CSVs (insurance.csv, quine.csv, birthwt.csv, cluster_trial.csv, pbc.csv)
# and effects_goldens.json. Needs R >= 4.2 with MASS, sandwich, survival, jsonlite.
suppressPackageStartupMessages({library(MASS); library(sandwich); library(survival)})
library(jsonlite)
options(digits = 17)
gold <- list(generated_by = "make_effects_goldens.R", r_version = R.version.string,
             MASS_version = as.character(packageVersion("MASS")),
             sandwich_version = as.character(packageVersion("sandwich")))

# ------------------------------------------------------------------ rate ratios
# Poisson with offset: MASS::Insurance (claims per policy holder), ordered factors made
# unordered so that R uses treatment contrasts. 'site' is an artificial cluster label
# (rows assigned cyclically to 8 sites) for the cluster-robust variance.
ins <- Insurance
ins$Group <- factor(ins$Group, levels = levels(Insurance$Group), ordered = FALSE)
ins$Age <- factor(ins$Age, levels = levels(Insurance$Age), ordered = FALSE)
ins$District <- factor(ins$District, ordered = FALSE)
ins$site <- (seq_len(nrow(ins)) - 1) %% 8 + 1
write.csv(ins, "insurance.csv", row.names = FALSE)

glm_summary <- function(fit, vc, conf = 0.95) {
  b <- coef(fit); se <- sqrt(diag(vc)); z <- b / se; q <- qnorm(1 - (1 - conf) / 2)
  list(terms = names(b), coef = unname(b), se = unname(se), rr = unname(exp(b)),
       rr_lower = unname(exp(b - q * se)), rr_upper = unname(exp(b + q * se)),
       z = unname(z), p = unname(2 * pnorm(-abs(z))))
}

pois <- glm(Claims ~ District + Group + Age + offset(log(Holders)), family = poisson,
            data = ins, control = glm.control(epsilon = 1e-14, maxit = 100))
gold$poisson <- list(
  data = "insurance.csv", count = "Claims", person_time = "Holders",
  covariates = c("District", "Group", "Age"),
  levels = list(District = levels(ins$District), Group = levels(ins$Group), Age = levels(ins$Age)),
  model = glm_summary(pois, vcov(pois)),
  model_90 = glm_summary(pois, vcov(pois), conf = 0.90),
  cluster_HC0 = glm_summary(pois, vcovCL(pois, cluster = ~site, type = "HC0")),
  cluster_HC1 = glm_summary(pois, vcovCL(pois, cluster = ~site, type = "HC1")),
  loglik = as.numeric(logLik(pois)))

# Negative binomial: MASS::quine (days absent), no exposure offset.
q <- quine
q$site <- (seq_len(nrow(q)) - 1) %% 10 + 1
write.csv(q, "quine.csv", row.names = FALSE)
nb <- glm.nb(Days ~ Eth + Sex + Age + Lrn, data = q,
             control = glm.control(epsilon = 1e-14, maxit = 100))
# glm.nb's SE.theta comes from theta.ml's last Newton step with eps = .Machine$double.eps^0.25,
# i.e. the information at the next-to-last iterate (about 3e-6 relative off here). The golden
# se_theta is the information at the converged theta and mu (theta.ml with eps = 1e-15).
th <- theta.ml(q$Days, fitted(nb), limit = 100, eps = 1e-15)
gold$negbin <- list(
  data = "quine.csv", count = "Days", covariates = c("Eth", "Sex", "Age", "Lrn"),
  theta = nb$theta, se_theta = attr(th, "SE"), se_theta_glm_nb = nb$SE.theta,
  theta_polished = as.numeric(th),
  model = glm_summary(nb, vcov(nb)),
  cluster_HC0 = glm_summary(nb, vcovCL(nb, cluster = ~site, type = "HC0")),
  cluster_HC1 = glm_summary(nb, vcovCL(nb, cluster = ~site, type = "HC1")),
  loglik = as.numeric(logLik(nb)))
# delete-one-cluster jackknife (CV3): the model refitted without each site with theta
# held at the full fit's (negative.binomial(theta) family; coefficients and theta are
# orthogonal), (G - 1) / G * crossprod(b_g - mean b); intervals and p-values on t, G - 1 df.
# epsilon 1e-16: glm's Fisher scoring converges only linearly here, and at 1e-14 the
# replicates stopped about 1e-8 short of their maximum (2e-7 relative in the jackknife se)
jk <- t(sapply(sort(unique(q$site)), function(g)
  coef(glm(Days ~ Eth + Sex + Age + Lrn, data = q[q$site != g, ],
           family = negative.binomial(as.numeric(th)),
           control = glm.control(epsilon = 1e-16, maxit = 1000)))))
G <- nrow(jk)
vjk <- (G - 1) / G * crossprod(sweep(jk, 2, colMeans(jk)))
se_jk <- sqrt(diag(vjk)); tq <- qt(0.975, G - 1)
gold$negbin$cluster_jackknife <- list(terms = names(coef(nb)), coef = unname(coef(nb)),
  se = unname(se_jk), rr = unname(exp(coef(nb))),
  rr_lower = unname(exp(coef(nb) - tq * se_jk)), rr_upper = unname(exp(coef(nb) + tq * se_jk)),
  z = unname(coef(nb) / se_jk), p = unname(2 * pt(-abs(coef(nb) / se_jk), G - 1)))

# A level without events (quine, age group F3 given no days absent): its coefficient's
# maximum is at minus infinity; glm.nb stops with a huge standard error there, and the
# other coefficients, their standard errors and theta are well defined.
qs <- q; qs$Days[qs$Age == "F3"] <- 0
nbs <- glm.nb(Days ~ Eth + Sex + Age + Lrn, data = qs,
              control = glm.control(epsilon = 1e-14, maxit = 100))
gold$negbin_level_without_events <- list(
  zero_level = list(column = "Age", level = "F3"), theta = nbs$theta,
  model = glm_summary(nbs, vcov(nbs)))

# ------------------------------------------------------------------ binary effects
# Hand-coded formulas (no package): Wald for RD, log RR and log OR (equal to binomial GLMs,
# checked below); Wilson score interval for each proportion (equals
# prop.test(correct = FALSE)$conf.int, checked below);
# Newcombe (1998) method 10 hybrid score interval for the risk difference.
wilson <- function(x, n, conf = 0.95) {
  z <- qnorm(1 - (1 - conf) / 2); p <- x / n
  centre <- (p + z^2 / (2 * n)) / (1 + z^2 / n)
  half <- z * sqrt(p * (1 - p) / n + z^2 / (4 * n^2)) / (1 + z^2 / n)
  c(centre - half, centre + half)
}
binary_effects <- function(x1, n1, x0, n0, c1 = 1, c0 = 1, conf = 0.95) {
  # arm 1 = comparison, arm 0 = reference; c1, c0 = variance inflation (design effects)
  z <- qnorm(1 - (1 - conf) / 2)
  p1 <- x1 / n1; p0 <- x0 / n0
  w1 <- wilson(p1 * n1 / c1, n1 / c1, conf); w0 <- wilson(p0 * n0 / c0, n0 / c0, conf)
  rd <- p1 - p0
  se_rd <- sqrt(c1 * p1 * (1 - p1) / n1 + c0 * p0 * (1 - p0) / n0)
  nc <- c(rd - sqrt((p1 - w1[1])^2 + (w0[2] - p0)^2), rd + sqrt((w1[2] - p1)^2 + (p0 - w0[1])^2))
  se_lrr <- sqrt(c1 * (1 - p1) / x1 + c0 * (1 - p0) / x0)
  se_lor <- sqrt(c1 * (1 / x1 + 1 / (n1 - x1)) + c0 * (1 / x0 + 1 / (n0 - x0)))
  lrr <- log(p1 / p0); lor <- log((x1 / (n1 - x1)) / (x0 / (n0 - x0)))
  list(p1 = p1, p0 = p0, wilson1 = w1, wilson0 = w0,
       rd = rd, rd_se = se_rd, rd_wald = rd + c(-1, 1) * z * se_rd, rd_z = rd / se_rd,
       rd_p = 2 * pnorm(-abs(rd / se_rd)), rd_newcombe = nc,
       rr = exp(lrr), log_rr_se = se_lrr, rr_ci = exp(lrr + c(-1, 1) * z * se_lrr),
       rr_p = 2 * pnorm(-abs(lrr / se_lrr)),
       or = exp(lor), log_or_se = se_lor, or_ci = exp(lor + c(-1, 1) * z * se_lor),
       or_p = 2 * pnorm(-abs(lor / se_lor)))
}

bw <- birthwt[, c("low", "smoke", "race")]
bw$smoke <- ifelse(bw$smoke == 1, "smoker", "non-smoker")
write.csv(bw, "birthwt.csv", row.names = FALSE)
x1 <- sum(bw$low[bw$smoke == "smoker"]); n1 <- sum(bw$smoke == "smoker")
x0 <- sum(bw$low[bw$smoke == "non-smoker"]); n0 <- sum(bw$smoke == "non-smoker")
be <- binary_effects(x1, n1, x0, n0)
pt1 <- prop.test(x1, n1, correct = FALSE, conf.level = 0.95)$conf.int
stopifnot(max(abs(pt1 - be$wilson1)) < 1e-12)   # Wilson == prop.test without correction
# The Wald formulas == binomial GLMs on the arm (identity, log and logit links): estimate,
# standard error and Wald interval of an independent implementation (glm, confint.default)
bw$arm1 <- as.integer(bw$smoke == "smoker")
for (chk in list(list(link = "identity", est = be$rd, se = be$rd_se, tr = identity),
                 list(link = "log", est = log(be$rr), se = be$log_rr_se, tr = exp),
                 list(link = "logit", est = log(be$or), se = be$log_or_se, tr = exp))) {
  g <- glm(low ~ arm1, family = binomial(link = chk$link), data = bw,
           control = glm.control(epsilon = 1e-14, maxit = 100),
           # started at the maximum (the arms' own proportions): the log link's iterations
           # otherwise stop about 1e-8 short of it
           start = with(list(l = binomial(link = chk$link)$linkfun(c(x0 / n0, x1 / n1))),
                        c(l[1], l[2] - l[1])))
  stopifnot(abs(coef(g)[["arm1"]] - chk$est) < 1e-9,
            abs(sqrt(vcov(g)["arm1", "arm1"]) - chk$se) < 1e-9)
}
stopifnot(max(abs(exp(confint.default(glm(low ~ arm1, family = binomial, data = bw,
                                           control = glm.control(epsilon = 1e-14)))["arm1", ])
                  - be$or_ci)) < 1e-9)
be90 <- binary_effects(x1, n1, x0, n0, conf = 0.90)
gold$binary <- list(data = "birthwt.csv", outcome = "low", group = "smoke",
                    reference = "non-smoker", comparison = "smoker",
                    x1 = x1, n1 = n1, x0 = x0, n0 = n0, conf95 = be, conf90 = be90)

# Cluster-randomised trial, simulated with a fixed seed (24 clusters, 12 per arm).
set.seed(20240601)
k <- 24; arm <- rep(c("control", "open dialogue"), each = k / 2)
m <- sample(5:40, k, replace = TRUE); u <- rnorm(k, 0, 0.6)
ct <- do.call(rbind, lapply(seq_len(k), function(i) {
  p <- plogis(qlogis(0.35) + log(0.6) * (arm[i] == "open dialogue") + u[i])
  data.frame(cluster = sprintf("c%02d", i), arm = arm[i], relapse = rbinom(m[i], 1, p))
}))
write.csv(ct, "cluster_trial.csv", row.names = FALSE)
# ANOVA estimator of the ICC with clusters nested in arms (Donner & Klar 2000, sec. 6.2.1)
cl <- aggregate(relapse ~ cluster + arm, data = ct, FUN = function(y) c(sum(y), length(y)))
cl <- data.frame(cluster = cl$cluster, arm = cl$arm, y = cl$relapse[, 1], m = cl$relapse[, 2])
cl$p <- cl$y / cl$m
N <- sum(cl$m); K <- nrow(cl)
Mj <- tapply(cl$m, cl$arm, sum); pj <- tapply(cl$y, cl$arm, sum) / Mj
msc <- sum(cl$m * (cl$p - pj[cl$arm])^2) / (K - 2)
msw <- sum(cl$m * cl$p * (1 - cl$p)) / (N - K)
m0 <- (N - sum(cl$m^2 / Mj[cl$arm])) / (K - 2)
icc <- max(0, (msc - msw) / (msc + (m0 - 1) * msw))
# variance inflation per arm, variable cluster sizes (Donner, Birkett & Buck 1981)
Cj <- tapply(cl$m * (1 + (cl$m - 1) * icc), cl$arm, sum) / Mj
x1 <- sum(cl$y[cl$arm == "open dialogue"]); x0 <- sum(cl$y[cl$arm == "control"])
bc <- binary_effects(x1, Mj[["open dialogue"]], x0, Mj[["control"]],
                     c1 = Cj[["open dialogue"]], c0 = Cj[["control"]])
gold$binary_cluster <- list(data = "cluster_trial.csv", outcome = "relapse", group = "arm",
                            cluster = "cluster", reference = "control",
                            comparison = "open dialogue", icc = icc,
                            design_effect = list(comparison = Cj[["open dialogue"]],
                                                 reference = Cj[["control"]]),
                            conf95 = bc)
# the same with the ICC given (e.g. from a previous trial)
bg <- binary_effects(x1, Mj[["open dialogue"]], x0, Mj[["control"]],
                     c1 = sum(cl$m[cl$arm == "open dialogue"] * (1 + (cl$m[cl$arm == "open dialogue"] - 1) * 0.05)) / Mj[["open dialogue"]],
                     c0 = sum(cl$m[cl$arm == "control"] * (1 + (cl$m[cl$arm == "control"] - 1) * 0.05)) / Mj[["control"]])
gold$binary_cluster_icc005 <- list(icc = 0.05, conf95 = bg)

# ------------------------------------------------------------------ Table 1
# survival::pbc, randomised patients (trt not NA). tableone is not installed: its
# computations are coded here from its source (tableone 0.13, modules-smd.R) and
# Yang & Dalton (2012):
#  continuous SMD  |m1 - m2| / sqrt((s1^2 + s2^2) / 2)   (sd with n - 1; NAs removed)
#  categorical SMD sqrt(t(T) %*% ginv(S) %*% T), T = p1 - p2 over levels but the first,
#                  S = (S1 + S2) / 2, Sk = diag(pk) - pk pk' (off-diagonal -pi pj)
#  more than two groups: the mean of the pairwise SMDs.
# Percentages are of non-missing values; quantiles are type 7 (tableone's default).
pbc1 <- pbc[!is.na(pbc$trt), c("trt", "age", "sex", "stage", "edema", "ascites", "bili",
                               "albumin", "chol", "platelet")]
pbc1$trt <- ifelse(pbc1$trt == 1, "D-penicillamine", "placebo")
write.csv(pbc1, "pbc.csv", row.names = FALSE)

smd_cont <- function(x, g) {
  lv <- sort(unique(g)); m <- sapply(lv, function(l) mean(x[g == l], na.rm = TRUE))
  v <- sapply(lv, function(l) var(x[g == l], na.rm = TRUE))
  pr <- combn(length(lv), 2)
  mean(apply(pr, 2, function(ij) abs(m[ij[1]] - m[ij[2]]) / sqrt((v[ij[1]] + v[ij[2]]) / 2)))
}
smd_cat <- function(x, g) {
  tab <- table(g, x); pt <- prop.table(tab, 1)
  if (ncol(pt) > 1) pt <- pt[, -1, drop = FALSE]
  pr <- combn(nrow(pt), 2)
  mean(apply(pr, 2, function(ij) {
    p1 <- pt[ij[1], ]; p2 <- pt[ij[2], ]
    S1 <- -outer(p1, p1); diag(S1) <- p1 * (1 - p1)
    S2 <- -outer(p2, p2); diag(S2) <- p2 * (1 - p2)
    T <- p1 - p2
    sqrt(drop(t(T) %*% ginv((S1 + S2) / 2) %*% T))
  }))
}
table_one_gold <- function(d, group, cont, nonnormal, cat) {
  lv <- sort(unique(d[[group]]))
  rows <- list()
  for (v in c(cont, nonnormal)) {
    for (l in lv) {
      x <- d[[v]][d[[group]] == l]; xx <- x[!is.na(x)]
      qs <- quantile(xx, c(0.25, 0.5, 0.75), type = 7)
      rows[[length(rows) + 1]] <- list(variable = v, group = l, n = length(xx),
        missing = sum(is.na(x)), mean = mean(xx), sd = sd(xx),
        median = qs[[2]], q1 = qs[[1]], q3 = qs[[3]])
    }
  }
  for (v in cat) {
    levs <- sort(unique(d[[v]][!is.na(d[[v]])]))
    for (l in lv) {
      x <- d[[v]][d[[group]] == l]
      for (a in levs) {
        rows[[length(rows) + 1]] <- list(variable = v, level = as.character(a), group = l,
          count = sum(x == a, na.rm = TRUE), pct = 100 * mean(x[!is.na(x)] == a),
          missing = sum(is.na(x)))
      }
    }
  }
  smd <- list()
  for (v in c(cont, nonnormal)) smd[[v]] <- smd_cont(d[[v]], d[[group]])
  for (v in cat) smd[[v]] <- smd_cat(d[[v]], d[[group]])
  list(group = group, groups = I(lv), n = as.list(table(d[[group]])), continuous = I(cont),
       nonnormal = I(nonnormal), categorical = I(cat), rows = rows, smd = smd)
}
gold$table_one <- table_one_gold(pbc1, "trt", c("age", "albumin"), c("bili", "chol", "platelet"),
                                 c("sex", "stage", "edema", "ascites"))
# three groups (edema 0 / 0.5 / 1): pairwise SMDs averaged, as tableone reports
pbc3 <- pbc1; pbc3$edema <- paste0("edema ", pbc3$edema)
gold$table_one_3groups <- table_one_gold(pbc3, "edema", c("age", "albumin"), c("bili"),
                                         c("sex", "stage"))

# a level present in one group only ('c' only in B): S is singular, and tableone's
# generalised inverse (MASS::ginv) decides the SMD
sing <- data.frame(g = rep(c("A", "B"), each = 4), x = c("a", "a", "b", "b", "a", "b", "c", "c"))
gold$smd_singular <- list(g = I(sing$g), x = I(sing$x), smd = smd_cat(sing$x, sing$g))

writeLines(toJSON(gold, digits = NA, auto_unbox = TRUE, pretty = TRUE), "effects_goldens.json")
