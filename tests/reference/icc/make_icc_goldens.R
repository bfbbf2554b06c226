# Golden values for pipeline.stats.icc: ANOVA ICC with Searle's interval, and the shared
# gamma frailty variance of coxph(... + frailty(cluster)).
# Run from this folder:  Rscript make_icc_goldens.R
# Writes the input CSVs and icc_goldens.json. Needs survival, lme4 (data), jsonlite.
suppressPackageStartupMessages({library(survival); library(lme4); library(jsonlite)})
options(digits = 17)
gold <- list(generated_by = "make_icc_goldens.R", r_version = R.version.string,
             survival_version = as.character(packageVersion("survival")))

# ------------------------------------------------------------------ ANOVA ICC by formula
# MSB = mean square of cluster within group (sequential SS after the group), MSW = residual
# mean square of lm(y ~ group + cluster); n0 = (N - sum_g sum_c m_c^2 / M_g) / (K - G);
# ICC = (MSB - MSW) / (MSB + (n0 - 1) MSW); Searle's interval from F = MSB / MSW.
anova_icc <- function(y, cluster, group, conf = 0.95) {
  cluster <- factor(cluster); group <- factor(group)
  fit <- if (nlevels(group) > 1) lm(y ~ group + cluster) else lm(y ~ cluster)
  tab <- anova(fit)
  msb <- tab["cluster", "Mean Sq"]; msw <- tab["Residuals", "Mean Sq"]
  dfb <- tab["cluster", "Df"]; dfw <- tab["Residuals", "Df"]
  m <- tapply(y, cluster, length); g <- tapply(as.character(group), cluster, `[`, 1)
  M <- tapply(m, g, sum)[g]
  n0 <- (sum(m) - sum(m^2 / M)) / dfb
  icc <- (msb - msw) / (msb + (n0 - 1) * msw)
  F <- msb / msw; a <- 1 - conf
  fl <- F / qf(1 - a / 2, dfb, dfw); fu <- F / qf(a / 2, dfb, dfw)
  list(icc_raw = icc, lower_raw = (fl - 1) / (fl + n0 - 1), upper_raw = (fu - 1) / (fu + n0 - 1),
       msb = msb, msw = msw, df_between = dfb, df_within = dfw, n0 = n0, F = F)
}
dy <- Dyestuff; dy$Batch <- as.character(dy$Batch)
write.csv(dy, "dyestuff.csv", row.names = FALSE)
sl <- sleepstudy; sl$Subject <- as.character(sl$Subject)
write.csv(sl, "sleepstudy.csv", row.names = FALSE)
ct <- read.csv("../clustered/cluster_trials.csv")
gold$icc <- list(
  dyestuff = c(list(data = "dyestuff.csv", outcome = "Yield", cluster = "Batch", within = list()),
               anova_icc(dy$Yield, dy$Batch, rep(1, nrow(dy)))),
  sleepstudy = c(list(data = "sleepstudy.csv", outcome = "Reaction", cluster = "Subject", within = list()),
                 anova_icc(sl$Reaction, sl$Subject, rep(1, nrow(sl)))),
  paired_binary_arm = with(ct[ct$design == "paired", ], c(list(data = "../clustered/cluster_trials.csv",
    design = "paired", outcome = "yb", cluster = "cluster", within = list("arm")), anova_icc(yb, cluster, arm))),
  stratified_binary_arm_site = with(ct[ct$design == "stratified", ], c(list(data = "../clustered/cluster_trials.csv",
    design = "stratified", outcome = "yb", cluster = "cluster", within = list("arm", "site")),
    anova_icc(yb, cluster, paste(arm, site)))))
# 90% interval once, to check the level is used
gold$icc$dyestuff_90 <- c(list(data = "dyestuff.csv", outcome = "Yield", cluster = "Batch", within = list(),
                               conf_level = 0.9), anova_icc(dy$Yield, dy$Batch, rep(1, nrow(dy)), 0.9))

# ------------------------------------------------------------------ gamma frailty
ctl <- coxph.control(eps = 1e-12, iter.max = 100, outer.max = 100, toler.chol = 1e-14)
write.csv(rats, "rats.csv", row.names = FALSE)
write.csv(kidney, "kidney.csv", row.names = FALSE)
cases <- list(
  rats = list(data = "rats.csv", duration = "time", event = "status", covariates = "rx", cluster = "litter",
              strata = NULL, df = read.csv("rats.csv")),
  kidney = list(data = "kidney.csv", duration = "time", event = "status", covariates = c("age", "sex"),
                cluster = "id", strata = NULL, df = read.csv("kidney.csv")),
  paired_trial = list(data = "../clustered/cluster_trials.csv", design = "paired", duration = "time",
                      event = "status", covariates = "arm", cluster = "cluster", strata = "site",
                      df = ct[ct$design == "paired", ]))
fml <- function(cs, fr) {
  rhs <- paste(c(cs$covariates, if (!is.null(cs$strata)) sprintf("strata(%s)", cs$strata), fr), collapse = " + ")
  as.formula(sprintf("Surv(%s, %s) ~ %s", cs$duration, cs$event, rhs))
}
closs <- function(cs, theta) {   # integrated log-likelihood at a fixed theta (c.loglik)
  if (theta == 0) return(coxph(fml(cs, NULL), data = cs$df, control = ctl)$loglik[2])
  f <- coxph(fml(cs, sprintf("frailty(%s, theta = %.17g)", cs$cluster, theta)), data = cs$df, control = ctl)
  f$history[[1]]$c.loglik
}
for (nm in names(cases)) {
  cs <- cases[[nm]]
  # fixed thetas around each data set's estimate (with one cluster per arm per site R
  # declares the arm aliased with the frailties from theta = 0.5 on, and drops it)
  thetas <- if (nm == "paired_trial") c(0.01, 0.05, 0.1) else c(0.1, 0.5, 1)
  fixed <- lapply(thetas, function(th) {
    f <- coxph(fml(cs, sprintf("frailty(%s, theta = %.17g)", cs$cluster, th)), data = cs$df, control = ctl)
    stopifnot(!anyNA(coef(f)))
    list(theta = th, c_loglik = f$history[[1]]$c.loglik, coef = unname(coef(f)), frail = unname(f$frail))
  })
  ll0 <- closs(cs, 0)
  # theta-hat: optimize the fixed-theta integrated likelihood over sqrt(theta)
  opt <- optimize(function(r) closs(cs, r^2), c(0, sqrt(20)), maximum = TRUE, tol = 1e-10)
  th <- opt$maximum^2; llmax <- opt$objective
  if (llmax <= ll0) { th <- 0; llmax <- ll0 }
  crit <- qchisq(0.95, 1) / 2
  lower <- if (th > 0 && llmax - ll0 > crit) uniroot(function(r) llmax - closs(cs, r^2) - crit,
            c(0, sqrt(th)), tol = 1e-12)$root^2 else 0
  upper <- uniroot(function(r) llmax - closs(cs, r^2) - crit, c(sqrt(max(th, 1e-12)), sqrt(100)), tol = 1e-12)$root^2
  em <- coxph(fml(cs, sprintf("frailty(%s, eps = 1e-10)", cs$cluster)), data = cs$df, control = ctl)
  cs$df <- NULL
  gold$frailty[[nm]] <- c(cs, list(fixed = fixed, loglik_0 = ll0, theta = th, loglik = llmax,
                                   lower = lower, upper = upper,
                                   theta_em = em$history[[1]]$theta, c_loglik_em = em$history[[1]]$c.loglik))
}
writeLines(toJSON(gold, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null"), "icc_goldens.json")
