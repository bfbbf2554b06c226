# Golden reference values for pipeline/stats/rmst.py (RMST and its difference) and the
# Fine-Gray model as pipeline/analyses/sensitivity.py uses it (arm and site, with the
# delete-one-cluster and delete-one-site jackknife), read by
# tests/reference/test_sensitivity_reference.py. The tests never call R.
#
# Regenerate from this folder with:   Rscript make_sensitivity_goldens.R
# Written with R 4.2.2, survival 3.5-3, cmprsk 2.2-11, jsonlite.
# Data: survival::lung (status recoded 0/1, as ../survival/data/lung.csv) and trial.csv
# (make_trial_csv.py: a synthetic cluster-randomised trial, 6 sites x 3 clusters per arm,
# relapse_event 0 censored / 1 relapse / 2 death). Full double precision (digits = NA).

suppressPackageStartupMessages({ library(survival); library(cmprsk); library(jsonlite) })
wjson <- function(x, file) {
  writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, na = "null", pretty = TRUE), file)
}
out <- list(versions = list(R = R.version.string,
                            survival = as.character(packageVersion("survival")),
                            cmprsk = as.character(packageVersion("cmprsk"))))

# ---------------------------------------------------------------- RMST (print.survfit rmean)
rm_tab <- function(fit, tau) {
  tab <- summary(fit, rmean = tau)$table
  if (is.null(dim(tab))) tab <- t(as.matrix(tab))
  list(rmean = unname(tab[, "rmean"]), se = unname(tab[, "se(rmean)"]))
}
lung <- read.csv("../survival/data/lung.csv")
out$rmst_lung_sex_365 <- c(list(call = "summary(survfit(Surv(time, status) ~ sex, lung), rmean = 365)$table"),
                           rm_tab(survfit(Surv(time, status) ~ sex, data = lung), 365))
out$rmst_lung_all_400 <- c(list(call = "summary(survfit(Surv(time, status) ~ 1, lung), rmean = 400)$table"),
                           rm_tab(survfit(Surv(time, status) ~ 1, data = lung), 400))
# tau beyond the last time of a group (the curve carried on to tau)
out$rmst_lung_sex_1100 <- c(list(call = "summary(survfit(Surv(time, status) ~ sex, lung), rmean = 1100)$table"),
                            rm_tab(survfit(Surv(time, status) ~ sex, data = lung), 1100))

tr <- read.csv("trial.csv", stringsAsFactors = FALSE)
tr$rel <- as.integer(tr$relapse_event == 1)   # deaths censored, as the primary analysis
rdiff <- function(d, tau) {
  r <- rm_tab(survfit(Surv(relapse_time, rel) ~ od, data = d), tau)  # groups od = 0, 1
  c(diff = r$rmean[2] - r$rmean[1], se = sqrt(r$se[1]^2 + r$se[2]^2), r1 = r$rmean[2], r0 = r$rmean[1])
}
jk <- function(d, unit, f) {   # delete-one-group jackknife: (G - 1) / G * sum (b_g - mean)^2
  g <- sort(unique(d[[unit]]))
  b <- sapply(g, function(x) f(d[d[[unit]] != x, ]))
  if (is.null(dim(b))) b <- matrix(b, nrow = 1)
  G <- length(g)
  list(se = sqrt((G - 1) / G * rowSums((b - rowMeans(b))^2)), G = G)
}
for (tau in c(365, 730)) {
  r <- rdiff(tr, tau)
  jc <- jk(tr, "cluster_id", function(d) rdiff(d, tau)["diff"])
  js <- jk(tr, "site_id", function(d) rdiff(d, tau)["diff"])
  q <- qt(0.975, jc$G - 1)
  out[[paste0("rmst_trial_", tau)]] <- list(
    call = sprintf("rmean = %d of survfit(Surv(relapse_time, relapse_event == 1) ~ od, trial); jackknife over cluster_id and site_id", tau),
    rmst_1 = unname(r["r1"]), rmst_0 = unname(r["r0"]), diff = unname(r["diff"]),
    se_model = unname(r["se"]), se_jk_cluster = jc$se, G_cluster = jc$G,
    lower_jk_cluster = unname(r["diff"]) - q * jc$se, upper_jk_cluster = unname(r["diff"]) + q * jc$se,
    se_jk_site = js$se, G_site = js$G)
}

# ---------------------------------------------------------------- Fine-Gray as used
fg <- function(d) {
  X <- model.matrix(~ od + site_id, d)[, -1, drop = FALSE]
  crr(d$relapse_time, d$relapse_event, cov1 = X, failcode = 1, gtol = 1e-12, maxiter = 50)
}
fit <- fg(tr)
fg_od <- function(d) unname(fg(d)$coef["od"])
jc <- jk(tr, "cluster_id", fg_od)
js <- jk(tr, "site_id", fg_od)
q <- qt(0.975, jc$G - 1)
b <- unname(fit$coef["od"])
out$fine_gray_trial <- list(
  call = "crr(relapse_time, relapse_event, cov1 = model.matrix(~ od + site_id, trial)[, -1], failcode = 1, gtol = 1e-12); jackknife of the od coefficient over cluster_id and site_id",
  term = names(fit$coef), coef = unname(fit$coef), se_sandwich = unname(sqrt(diag(fit$var))),
  se_jk_cluster = jc$se, G_cluster = jc$G, hr_lower_jk_cluster = exp(b - q * jc$se),
  hr_upper_jk_cluster = exp(b + q * jc$se), p_jk_cluster = 2 * pt(-abs(b / jc$se), jc$G - 1),
  se_jk_site = js$se, G_site = js$G)
wjson(out, "sensitivity.json")
