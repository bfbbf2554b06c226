# Golden reference values for pipeline/stats/{survival,cox,competing}.py.
#
# Regenerate from this folder with:   Rscript make_golden.R
# Written with R 4.2.2, survival 3.5-3, cmprsk 2.2-11, sandwich, jsonlite.
# Writes the datasets it uses as CSV (data/*.csv) and one JSON file per estimator family.
# Every number is written with full double precision (digits = NA).

suppressPackageStartupMessages({
  library(survival); library(cmprsk); library(sandwich); library(jsonlite)
})

dir.create("data", showWarnings = FALSE)
wjson <- function(x, file) {
  writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, na = "null", pretty = TRUE), file)
}
versions <- list(R = R.version.string,
                 survival = as.character(packageVersion("survival")),
                 cmprsk = as.character(packageVersion("cmprsk")),
                 sandwich = as.character(packageVersion("sandwich")))

# ---------------------------------------------------------------- datasets
# lung: status 1 = censored, 2 = dead in R; exported with status recoded to 0/1 (event).
lung2 <- survival::lung
lung2$status <- as.integer(lung2$status == 2)
write.csv(lung2, "data/lung.csv", row.names = FALSE)

vet <- survival::veteran
vet$celltype <- as.character(vet$celltype)
write.csv(vet, "data/veteran.csv", row.names = FALSE)

# colon: two rows per person (etype 1 = recurrence, 2 = death); rx as 0/1 dummies.
col <- survival::colon
col$rxLev <- as.integer(col$rx == "Lev")
col$rxLev5FU <- as.integer(col$rx == "Lev+5FU")
col$rx <- as.character(col$rx)
write.csv(col, "data/colon.csv", row.names = FALSE)

# mgus2: competing risks of plasma-cell malignancy (pcm, event 1) and death (event 2).
mg <- survival::mgus2
mg$etime <- ifelse(mg$pstat == 0, mg$futime, mg$ptime)
mg$event <- ifelse(mg$pstat == 0, 2 * mg$death, 1)
mg$male <- as.integer(mg$sex == "M")
mg$sex <- as.character(mg$sex)
# a three-level text covariate (levels sort as middle < old < young in any locale)
mg$agegrp <- ifelse(mg$age < 60, "young", ifelse(mg$age < 75, "middle", "old"))
write.csv(mg, "data/mgus2.csv", row.names = FALSE)

# ---------------------------------------------------------------- Kaplan-Meier
km_table <- function(fit) {
  s <- summary(fit, censored = TRUE)
  list(group = if (is.null(s$strata)) rep("all", length(s$time)) else
         sub(".*=", "", as.character(s$strata)),
       time = s$time, n_risk = s$n.risk, n_event = s$n.event, n_censor = s$n.censor,
       survival = s$surv, se = s$std.err, lower = s$lower, upper = s$upper)
}
km_median <- function(fit) {
  tb <- summary(fit)$table
  if (is.null(dim(tb))) tb <- t(as.matrix(tb))
  list(group = if (nrow(tb) == 1) "all" else sub(".*=", "", rownames(tb)),
       median = unname(tb[, "median"]), lower = unname(tb[, "0.95LCL"]),
       upper = unname(tb[, "0.95UCL"]))
}
km_risk <- function(fit, times) {
  s <- summary(fit, times = times, extend = TRUE)
  list(group = if (is.null(s$strata)) rep("all", length(s$time)) else
         sub(".*=", "", as.character(s$strata)),
       time = s$time, n_risk = s$n.risk, n_event = s$n.event, n_censor = s$n.censor,
       survival = s$surv, se = s$std.err, lower = s$lower, upper = s$upper)
}
km <- list()
f <- survfit(Surv(time, status) ~ sex, data = lung2, conf.type = "log")
km$lung_sex_log <- list(call = "survfit(Surv(time, status) ~ sex, data = lung, conf.type = 'log')",
  table = km_table(f), median = km_median(f),
  risk = km_risk(f, c(0, 180, 360, 540, 720, 900)))
f <- survfit(Surv(time, status) ~ sex, data = lung2, conf.type = "log-log")
km$lung_sex_loglog <- list(call = "survfit(Surv(time, status) ~ sex, data = lung, conf.type = 'log-log')",
  table = km_table(f), median = km_median(f))
f <- survfit(Surv(time, status) ~ 1, data = vet, conf.type = "log", conf.int = 0.90)
km$veteran_all_log90 <- list(call = "survfit(Surv(time, status) ~ 1, data = veteran, conf.int = 0.90)",
  table = km_table(f))
tb <- summary(f)$table
km$veteran_all_log90$median <- list(group = "all", median = unname(tb["median"]),
  lower = unname(tb["0.9LCL"]), upper = unname(tb["0.9UCL"]))
wjson(c(list(versions = versions), km), "km.json")

# ---------------------------------------------------------------- log-rank
lr_out <- function(sd, call) {
  list(call = call, chisq = sd$chisq, df = length(sd$n) - 1,
       p = pchisq(sd$chisq, length(sd$n) - 1, lower.tail = FALSE),
       group = sub(".*=", "", names(sd$n)), n = as.numeric(sd$n),
       observed = if (is.matrix(sd$obs)) rowSums(sd$obs) else sd$obs,
       expected = if (is.matrix(sd$exp)) rowSums(sd$exp) else sd$exp)
}
lr <- list()
lr$lung_sex <- lr_out(survdiff(Surv(time, status) ~ sex, data = lung2),
                      "survdiff(Surv(time, status) ~ sex, data = lung)")
lr$veteran_celltype <- lr_out(survdiff(Surv(time, status) ~ celltype, data = vet),
                              "survdiff(Surv(time, status) ~ celltype, data = veteran)")
lr$lung_sex_strata_ecog <- lr_out(
  survdiff(Surv(time, status) ~ sex + strata(ph.ecog), data = lung2),
  "survdiff(Surv(time, status) ~ sex + strata(ph.ecog), data = lung)")
lr$veteran_trt_strata_celltype <- lr_out(
  survdiff(Surv(time, status) ~ trt + strata(celltype), data = vet),
  "survdiff(Surv(time, status) ~ trt + strata(celltype), data = veteran)")
wjson(c(list(versions = versions), lr), "logrank.json")

# ---------------------------------------------------------------- Cox
cox_out <- function(fit, call, zph = TRUE, naive = NULL) {
  s <- summary(fit)$coefficients
  out <- list(call = call, term = I(rownames(s)), coef = unname(coef(fit)),
    se = unname(sqrt(diag(fit$var))), loglik = fit$loglik,
    lr_chisq = 2 * diff(fit$loglik), lr_df = length(coef(fit)),
    n = fit$n, nevent = fit$nevent,
    ci_lower = unname(summary(fit)$conf.int[, "lower .95"]),
    ci_upper = unname(summary(fit)$conf.int[, "upper .95"]),
    z = unname(s[, "z"]), p = unname(s[, "Pr(>|z|)"]))
  if (!is.null(fit$naive.var)) out$se_naive <- unname(sqrt(diag(fit$naive.var)))
  sm <- summary(fit)
  out$score_test <- list(chisq = unname(sm$sctest["test"]), df = unname(sm$sctest["df"]),
                         p = unname(sm$sctest["pvalue"]))
  if (!is.null(sm$robscore))  # robust score test (Lin & Wei 1989): fits with a cluster
    out$robust_score_test <- list(chisq = unname(sm$robscore["test"]),
                                  df = unname(sm$robscore["df"]), p = unname(sm$robscore["pvalue"]))
  cc <- concordance(fit)
  out$concordance <- unname(cc$concordance); out$concordance_se <- sqrt(unname(cc$var))
  if (zph) {
    z <- cox.zph(fit)
    out$zph <- list(term = rownames(z$table), chisq = unname(z$table[, "chisq"]),
                    df = unname(z$table[, "df"]), p = unname(z$table[, "p"]))
  }
  out
}
cx <- list()
f <- coxph(Surv(time, status) ~ trt + karno + age + diagtime + prior, data = vet, ties = "efron")
cx$veteran_efron <- cox_out(f, "coxph(Surv(time, status) ~ trt + karno + age + diagtime + prior, data = veteran, ties = 'efron')")
f <- coxph(Surv(time, status) ~ trt + karno + age + diagtime + prior, data = vet, ties = "breslow")
cx$veteran_breslow <- cox_out(f, "coxph(Surv(time, status) ~ trt + karno + age + diagtime + prior, data = veteran, ties = 'breslow')")
f <- coxph(Surv(time, status) ~ trt + karno + age + strata(celltype), data = vet)
cx$veteran_strata <- cox_out(f, "coxph(Surv(time, status) ~ trt + karno + age + strata(celltype), data = veteran)")
f <- coxph(Surv(time, status) ~ age + sex + ph.ecog + wt.loss, data = lung2)
cx$lung_missing <- cox_out(f, "coxph(Surv(time, status) ~ age + sex + ph.ecog + wt.loss, data = lung)  # 18 rows with NA dropped")
f <- coxph(Surv(time, status) ~ rxLev + rxLev5FU + sex + age + nodes, data = col, cluster = id)
cx$colon_cluster_efron <- cox_out(f, "coxph(Surv(time, status) ~ rxLev + rxLev5FU + sex + age + nodes, data = colon, cluster = id)", zph = FALSE)
f <- coxph(Surv(time, status) ~ rxLev + rxLev5FU + sex + age + nodes, data = col, cluster = id, ties = "breslow")
cx$colon_cluster_breslow <- cox_out(f, "coxph(Surv(time, status) ~ rxLev + rxLev5FU + sex + age + nodes, data = colon, cluster = id, ties = 'breslow')", zph = FALSE)
f <- coxph(Surv(time, status) ~ rxLev + rxLev5FU + age + strata(sex), data = col, cluster = id)
cx$colon_cluster_strata <- cox_out(f, "coxph(Surv(time, status) ~ rxLev + rxLev5FU + age + strata(sex), data = colon, cluster = id)", zph = FALSE)

# Few clusters (18 institutions): sandwich::vcovCL on the naive fit reproduces coxph's
# robust variance with cadjust = FALSE and adds the G/(G-1) factor with cadjust = TRUE.
d <- subset(lung2, !is.na(inst))
f0 <- coxph(Surv(time, status) ~ age + sex + ph.ecog, data = d)
f1 <- coxph(Surv(time, status) ~ age + sex + ph.ecog, data = d, cluster = inst)
G <- length(unique(d$inst[complete.cases(d[, c("age", "sex", "ph.ecog")])]))
cx$lung_inst_small <- c(cox_out(f1, "coxph(Surv(time, status) ~ age + sex + ph.ecog, data = subset(lung, !is.na(inst)), cluster = inst)", zph = FALSE),
  list(n_clusters = G,
       vcov_hc0 = unname(vcovCL(f0, cluster = d$inst[-f0$na.action], type = "HC0", cadjust = FALSE)),
       vcov_cr1 = unname(vcovCL(f0, cluster = d$inst[-f0$na.action], type = "HC0", cadjust = TRUE))))
# Delete-one-cluster jackknife (CV3): coxph refitted without each cluster in turn,
# (G - 1) / G * sum_g (b_g - mean b)(b_g - mean b)'.
jackknife_vcov <- function(formula, data, cluster) {
  ids <- sort(unique(data[[cluster]]))
  fits <- sapply(ids, function(g) coef(coxph(formula, data = data[data[[cluster]] != g, ])))
  b <- matrix(fits, nrow = length(ids), byrow = TRUE)  # one row per cluster left out
  dev <- sweep(b, 2, colMeans(b))
  (length(ids) - 1) / length(ids) * crossprod(dev)
}
# ... and of the score at beta = 0: the score residuals of a fit stopped at init = 0
jackknife_score_var <- function(formula, data, cluster, p) {
  ids <- sort(unique(data[[cluster]]))
  u <- sapply(ids, function(g) {
    sub <- data[data[[cluster]] != g, ]
    f0 <- suppressWarnings(coxph(formula, data = sub, init = rep(0, p), x = TRUE, y = TRUE,
                                 control = coxph.control(iter.max = 0)))
    colSums(as.matrix(residuals(f0, type = "score")))
  })
  u <- matrix(u, nrow = length(ids), byrow = TRUE)
  (length(ids) - 1) / length(ids) * crossprod(sweep(u, 2, colMeans(u)))
}
dj <- d[complete.cases(d[, c("age", "sex", "ph.ecog")]), ]
cx$lung_inst_small$vcov_jackknife <- unname(jackknife_vcov(Surv(time, status) ~ age + sex + ph.ecog, dj, "inst"))

# The trial's primary analysis in miniature: one binary covariate, strata, and clusters
# (18 institutions); its robust score test is the cluster-robust stratified log-rank test.
d2 <- subset(lung2, !is.na(inst) & !is.na(ph.ecog))
d2$female <- as.integer(d2$sex == 2)
f <- coxph(Surv(time, status) ~ female + strata(ph.ecog), data = d2, cluster = inst)
cx$lung_inst_strata_binary <- cox_out(f, "coxph(Surv(time, status) ~ I(sex == 2) + strata(ph.ecog), data = subset(lung, !is.na(inst) & !is.na(ph.ecog)), cluster = inst)", zph = FALSE)
cx$lung_inst_strata_binary$vcov_jackknife <- unname(jackknife_vcov(Surv(time, status) ~ female + strata(ph.ecog), d2, "inst"))
cx$lung_inst_strata_binary$score_var_jackknife <- unname(jackknife_score_var(Surv(time, status) ~ female + strata(ph.ecog), d2, "inst", 1))
cx$lung_inst_strata_binary$score_at_0 <- unname(colSums(as.matrix(residuals(suppressWarnings(
  coxph(Surv(time, status) ~ female + strata(ph.ecog), data = d2, init = 0, x = TRUE, y = TRUE,
        control = coxph.control(iter.max = 0))), type = "score"))))
# Text covariates: coxph turns a character column into a factor (levels sorted) with
# treatment contrasts; cox.zph tests the factor as one term.
f <- coxph(Surv(time, status) ~ trt + celltype + karno, data = vet)
cx$veteran_celltype_factor <- cox_out(f, "coxph(Surv(time, status) ~ trt + celltype + karno, data = veteran)  # celltype character: reference 'adeno'")
f <- coxph(Surv(time, status) ~ rx + sex + age, data = col, cluster = id)
cx$colon_rx_factor_cluster <- cox_out(f, "coxph(Surv(time, status) ~ rx + sex + age, data = colon, cluster = id)  # rx character: reference 'Lev'", zph = FALSE)
wjson(c(list(versions = versions), cx), "cox.json")

# ---------------------------------------------------------------- competing risks
aj_out <- function(fit) {
  ss <- summary(fit, censored = TRUE)
  st <- fit$states
  grp <- if (is.null(ss$strata)) rep("all", length(ss$time)) else sub(".*=", "", as.character(ss$strata))
  out <- list(group = grp, time = ss$time, n_risk = ss$n.risk[, 1])
  for (k in seq_along(st)[-1]) {
    out[[paste0("cif_", k - 1)]] <- ss$pstate[, k]
    out[[paste0("se_", k - 1)]] <- ss$std.err[, k]
    out[[paste0("lower_", k - 1)]] <- ss$lower[, k]
    out[[paste0("upper_", k - 1)]] <- ss$upper[, k]
  }
  out
}
mgf <- mg; mgf$fevent <- factor(mgf$event, 0:2, c("censor", "pcm", "death"))
cr <- list()
cr$aj_mgus2_all <- c(list(call = "survfit(Surv(etime, factor(event, 0:2)) ~ 1, data = mgus2)"),
                     aj_out(survfit(Surv(etime, fevent) ~ 1, data = mgf)))
cr$aj_mgus2_sex <- c(list(call = "survfit(Surv(etime, factor(event, 0:2)) ~ sex, data = mgus2)"),
                     aj_out(survfit(Surv(etime, fevent) ~ sex, data = mgf)))
ci <- cuminc(mg$etime, mg$event, group = mg$sex)
cuminc_out <- list()
for (nm in setdiff(names(ci), "Tests")) cuminc_out[[nm]] <- list(time = ci[[nm]]$time, est = ci[[nm]]$est, var = ci[[nm]]$var)
cr$cuminc_mgus2_sex <- list(call = "cuminc(mgus2$etime, mgus2$event, group = mgus2$sex)",
  curves = cuminc_out, tests = list(cause = rownames(ci$Tests), stat = unname(ci$Tests[, "stat"]),
  p = unname(ci$Tests[, "pv"]), df = unname(ci$Tests[, "df"])))
ci3 <- cuminc(col$time[col$etype == 1], col$status[col$etype == 1] * 1 + 0, group = col$rx[col$etype == 1],
              strata = col$sex[col$etype == 1], rho = 1)
cr$cuminc_colon_rx_strata_rho1 <- list(call = "cuminc(time, status, group = rx, strata = sex, rho = 1, subset etype == 1 of colon)",
  tests = list(cause = rownames(ci3$Tests), stat = unname(ci3$Tests[, "stat"]),
  p = unname(ci3$Tests[, "pv"]), df = unname(ci3$Tests[, "df"])))

crr_out <- function(fit, call, default_fit) {
  list(call = call, term = names(fit$coef), coef = unname(fit$coef),
       se = unname(sqrt(diag(fit$var))), loglik = fit$loglik, loglik_null = fit$loglik.null,
       coef_default_gtol = unname(default_fit$coef), se_default_gtol = unname(sqrt(diag(default_fit$var))))
}
X <- cbind(age = mg$age, male = mg$male)
for (fc in 1:2) {
  tight <- crr(mg$etime, mg$event, cov1 = X, failcode = fc, gtol = 1e-12, maxiter = 50)
  dflt <- crr(mg$etime, mg$event, cov1 = X, failcode = fc)
  cr[[paste0("crr_mgus2_cause", fc)]] <- crr_out(tight,
    sprintf("crr(etime, event, cov1 = cbind(age, male), failcode = %d, gtol = 1e-12, maxiter = 50)", fc), dflt)
}
# crr with a missing covariate (mspike has NA)
Xm <- cbind(age = mg$age, male = mg$male, mspike = mg$mspike)
tight <- crr(mg$etime, mg$event, cov1 = Xm, failcode = 1, gtol = 1e-12, maxiter = 50)
cr$crr_mgus2_mspike <- crr_out(tight, "crr(etime, event, cov1 = cbind(age, male, mspike), failcode = 1, gtol = 1e-12)  # NA rows dropped",
                               crr(mg$etime, mg$event, cov1 = Xm, failcode = 1))
# crr takes a matrix: the text covariates coded as R's model.matrix does (treatment contrasts)
Xf <- model.matrix(~ agegrp + sex, data = mg)[, -1]
tight <- crr(mg$etime, mg$event, cov1 = Xf, failcode = 1, gtol = 1e-12, maxiter = 50)
cr$crr_mgus2_factors <- crr_out(tight, "crr(etime, event, cov1 = model.matrix(~ agegrp + sex, mgus2)[, -1], failcode = 1, gtol = 1e-12)",
                                crr(mg$etime, mg$event, cov1 = Xf, failcode = 1))

# Aalen-Johansen at chosen times: summary(..., times =, extend = TRUE), cuminc's timepoints()
aj_times <- c(0, 0.5, 1, 1.5, 12, 60, 120, 400, 500)
ss <- summary(survfit(Surv(etime, fevent) ~ sex, data = mgf), times = aj_times, extend = TRUE)
at <- list(call = "summary(survfit(Surv(etime, factor(event, 0:2)) ~ sex, data = mgus2), times = c(0, 0.5, 1, 1.5, 12, 60, 120, 400, 500), extend = TRUE)",
           times = aj_times, group = sub(".*=", "", as.character(ss$strata)), time = ss$time,
           n_risk = ss$n.risk[, 1])
for (k in 2:3) {
  at[[paste0("n_event_", k - 1)]] <- ss$n.event[, k]
  at[[paste0("cif_", k - 1)]] <- ss$pstate[, k]
  at[[paste0("se_", k - 1)]] <- ss$std.err[, k]
  at[[paste0("lower_", k - 1)]] <- ss$lower[, k]
  at[[paste0("upper_", k - 1)]] <- ss$upper[, k]
}
cr$aj_mgus2_sex_at <- at
tp_times <- c(0.5, 1, 12, 60, 120, 400)
tp <- timepoints(ci, tp_times)
cr$cuminc_mgus2_sex_timepoints <- list(call = "timepoints(cuminc(mgus2$etime, mgus2$event, group = mgus2$sex), c(0.5, 1, 12, 60, 120, 400))",
  times = tp_times, curve = rownames(tp$est), est = unname(tp$est), var = unname(tp$var))
wjson(c(list(versions = versions), cr), "competing.json")
cat("done\n")
