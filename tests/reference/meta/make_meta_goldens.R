# Golden values for pipeline.stats.meta (meta_analysis, meta_regression) from metafor.
# Run from this folder:  Rscript make_meta_goldens.R
# Writes bcg.csv, hine1989.csv and meta_goldens.json.
#
# Convergence: metafor's defaults (threshold = 1e-5 on the change in tau^2 for REML,
# uniroot tol = .Machine$double.eps^0.25 for PM) stop earlier than 1e-6 relative accuracy
# can be claimed, so the goldens are computed with control = list(threshold = 1e-12,
# tol = 1e-14, maxiter = 10000): the exact REML / PM solution. The Python code iterates
# to the same (tighter) criterion.
suppressPackageStartupMessages(library(metafor))
library(jsonlite)
options(digits = 17)

ctrl <- list(threshold = 1e-12, tol = 1e-14, maxiter = 10000)

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg,
              slab = paste(author, year))
bcg <- data.frame(label = paste(bcg$author, bcg$year), year = bcg$year, ablat = bcg$ablat,
                  alloc = bcg$alloc, yi = as.numeric(bcg$yi), vi = as.numeric(bcg$vi))
write.csv(bcg, "bcg.csv", row.names = FALSE)

hine <- escalc(measure = "OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = dat.hine1989)
hine <- data.frame(label = hine$study, yi = as.numeric(hine$yi), vi = as.numeric(hine$vi))
write.csv(hine, "hine1989.csv", row.names = FALSE)

one_fit <- function(d, method, test, level = 95) {
  fit <- rma(yi, vi, data = d, method = method, test = test, level = level, control = ctrl)
  pr <- predict(fit, level = level)
  list(
    dataset = NA, method = method, test = test, conf_level = level / 100,
    estimate = as.numeric(fit$b), se = fit$se, zval = fit$zval, pval = fit$pval,
    ci_lb = fit$ci.lb, ci_ub = fit$ci.ub, tau2 = fit$tau2, I2 = fit$I2, H2 = fit$H2,
    QE = fit$QE, QEp = fit$QEp,
    # metafor gives no prediction interval for a fixed-effect model; with tau^2 = 0 it
    # is the confidence interval, which is what odeval reports
    pi_lb = if (is.null(pr$pi.lb)) pr$ci.lb else pr$pi.lb,
    pi_ub = if (is.null(pr$pi.ub)) pr$ci.ub else pr$pi.ub,
    weights = as.numeric(weights(fit)),  # percent
    # Higgins, Thompson & Spiegelhalter (2009) prediction interval: t on k - 2 df with
    # metafor's pooled se and tau^2 (metafor 3.8 has no pi.type; this is its formula)
    pi_higgins = as.numeric(pr$pred) + c(-1, 1) * qt(1 - (1 - level / 100) / 2, fit$k - 2) *
      sqrt(as.numeric(pr$se)^2 + fit$tau2),
    # Q-profile confidence intervals of tau^2, I^2 and H^2 (Viechtbauer 2007), solved
    # tightly (uniroot's default tolerance is ~1e-4)
    qprofile = if (method == "FE") NULL else {
      ci <- confint(fit, level = level, control = list(tol = 1e-14, maxiter = 10000))$random
      list(tau2 = as.numeric(ci["tau^2", c("ci.lb", "ci.ub")]),
           I2 = as.numeric(ci["I^2(%)", c("ci.lb", "ci.ub")]),
           H2 = as.numeric(ci["H^2", c("ci.lb", "ci.ub")]))
    }
  )
}

fits <- list()
for (nm in c("bcg", "hine1989")) {
  d <- if (nm == "bcg") bcg else hine
  for (method in c("REML", "DL", "PM", "FE")) {
    for (test in c("z", "knha")) {
      if (method == "FE" && test == "knha") next
      f <- one_fit(d, method, test)
      f$dataset <- nm
      fits[[length(fits) + 1]] <- f
    }
  }
}
# a non-default level once
f <- one_fit(bcg, "REML", "z", level = 90); f$dataset <- "bcg"; fits[[length(fits) + 1]] <- f

regs <- list()
for (method in c("REML", "DL", "PM")) {
  for (test in c("z", "knha")) {
    fit <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = method, test = test,
               control = ctrl)
    regs[[length(regs) + 1]] <- list(
      dataset = "bcg", moderators = c("ablat", "year"), method = method, test = test,
      terms = rownames(fit$b), coef = as.numeric(fit$b), se = fit$se, zval = fit$zval,
      pval = fit$pval, ci_lb = fit$ci.lb, ci_ub = fit$ci.ub, tau2 = fit$tau2,
      QM = fit$QM, QMp = fit$QMp, QE = fit$QE, QEp = fit$QEp, R2 = fit$R2,
      I2 = fit$I2, H2 = fit$H2
    )
  }
}
# categorical moderator (treatment coding, first level as reference)
fit <- rma(yi, vi, mods = ~ factor(alloc), data = bcg, method = "REML", control = ctrl)
regs[[length(regs) + 1]] <- list(
  dataset = "bcg", moderators = I("alloc"), method = "REML", test = "z",
  terms = rownames(fit$b), coef = as.numeric(fit$b), se = fit$se, zval = fit$zval,
  pval = fit$pval, ci_lb = fit$ci.lb, ci_ub = fit$ci.ub, tau2 = fit$tau2,
  QM = fit$QM, QMp = fit$QMp, QE = fit$QE, QEp = fit$QEp, R2 = fit$R2,
  I2 = fit$I2, H2 = fit$H2
)

out <- list(
  generated_by = "make_meta_goldens.R",
  r_version = R.version.string,
  metafor_version = as.character(packageVersion("metafor")),
  control = ctrl,
  meta_analysis = fits,
  meta_regression = regs
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "meta_goldens.json")
