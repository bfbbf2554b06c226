# Golden values for pipeline.stats.propensity, .weighting and .evalue.
# Run from this folder:  Rscript make_weighting_goldens.R
# Writes data/rotterdam.csv, data/lalonde.csv and weighting_goldens.json.
# Needs R >= 4.2 with survival, survey, sandwich, splines, numDeriv, MatchIt (for the
# lalonde data) and jsonlite. WeightIt, cobalt and EValue are not installed: their
# formulas (weights, balance statistics, E-values) are coded below from their
# documentation, and every estimate that a fitting function gives (glm, coxph, survfit,
# svycoxph, svyglm) comes from that function.
suppressPackageStartupMessages({
  library(survival); library(survey); library(sandwich); library(splines)
  library(numDeriv); library(jsonlite)
})
options(digits = 17)
gold <- list(generated_by = "make_weighting_goldens.R", r_version = R.version.string,
             survival_version = as.character(packageVersion("survival")),
             survey_version = as.character(packageVersion("survey")),
             numDeriv_version = as.character(packageVersion("numDeriv")))

# ------------------------------------------------------------------ data
# Rotterdam breast cancer data (survival::rotterdam): hormonal treatment was not
# randomised. Recurrence-free time: rtime, recur. Competing: death without recurrence.
rot <- survival::rotterdam
rot$size <- as.character(rot$size)
rot$etime <- ifelse(rot$recur == 1, rot$rtime, rot$dtime)
rot$ev <- ifelse(rot$recur == 1, 1L, ifelse(rot$death == 1, 2L, 0L))
rot$years <- rot$rtime / 365.25
rot <- rot[, c("pid", "year", "age", "meno", "size", "grade", "nodes", "pgr", "er",
               "hormon", "chemo", "rtime", "recur", "etime", "ev", "years")]
write.csv(rot, "data/rotterdam.csv", row.names = FALSE)
# factor levels in code-point order, as pipeline.stats sorts them
rot$size <- factor(rot$size, levels = sort(unique(rot$size), method = "radix"))
rot$grade_f <- factor(rot$grade)

data(lalonde, package = "MatchIt")
lal <- lalonde
lal$race <- as.character(lal$race)
lal$employed <- as.integer(lal$re78 > 0)
lal <- lal[, c("treat", "age", "educ", "race", "married", "nodegree", "re74", "re75",
               "employed")]
write.csv(lal, "data/lalonde.csv", row.names = FALSE)
lal$race <- factor(lal$race, levels = sort(unique(lal$race), method = "radix"))

# ------------------------------------------------------------------ weights (WeightIt's formulas)
weights_for <- function(e, a, estimand) {
  switch(estimand,
         ATE = ifelse(a == 1, mean(e) / e, (1 - mean(e)) / (1 - e)),  # stabilised
         ATT = ifelse(a == 1, 1, e / (1 - e)),
         ATO = ifelse(a == 1, 1 - e, e))
}
# each person's influence on the propensity coefficients: estfun %*% bread / n
ps_influence <- function(fit) estfun(fit) %*% bread(fit) / nrow(model.matrix(fit))

# ------------------------------------------------------------------ propensity models
rot_formula <- hormon ~ age + meno + size + nodes + pgr + er + chemo + year + grade_f
psA <- glm(rot_formula, family = binomial, data = rot,
           control = glm.control(epsilon = 1e-14, maxit = 100))
eA <- unname(fitted(psA))
gold$ps_linear <- list(
  data = "rotterdam.csv", treatment = "hormon",
  covariates = c("age", "meno", "size", "nodes", "pgr", "er", "chemo", "year"),
  strata = "grade",
  call = "glm(hormon ~ age + meno + size + nodes + pgr + er + chemo + year + factor(grade), binomial)",
  terms = names(coef(psA)), coef = unname(coef(psA)),
  se = unname(sqrt(diag(vcov(psA)))), ps = eA,
  w_ATE = weights_for(eA, rot$hormon, "ATE"), w_ATT = weights_for(eA, rot$hormon, "ATT"),
  w_ATO = weights_for(eA, rot$hormon, "ATO"),
  w_ATE_unstabilised = ifelse(rot$hormon == 1, 1 / eA, 1 / (1 - eA)))

# restricted cubic spline of age with 4 knots at Harrell's quantiles (type 7) spans the
# natural cubic splines of splines::ns with the same knots, plus an interaction
kn <- unname(quantile(rot$age, c(0.05, 0.35, 0.65, 0.95), type = 7))
psB <- glm(hormon ~ ns(age, knots = kn[2:3], Boundary.knots = kn[c(1, 4)]) + meno + size +
             nodes + pgr + er + chemo + year + grade_f + meno:nodes,
           family = binomial, data = rot, control = glm.control(epsilon = 1e-14, maxit = 100))
gold$ps_spline <- list(knots = kn, ps = unname(fitted(psB)),
                       call = "ns(age, knots = kn[2:3], Boundary.knots = kn[c(1, 4)]) + ... + meno:nodes")

# trimming at 0.05 (Crump et al.): drop scores outside [0.05, 0.95], refit on the rest
keep <- eA >= 0.05 & eA <= 0.95
rot_t <- rot[keep, ]
psT <- glm(rot_formula, family = binomial, data = rot_t,
           control = glm.control(epsilon = 1e-14, maxit = 100))
gold$ps_trimmed <- list(trim = 0.05, kept = which(keep) - 1L, coef = unname(coef(psT)),
                        ps = unname(fitted(psT)))

# ------------------------------------------------------------------ balance (cobalt's formulas)
# one term per numeric covariate and per level of a categorical one; SMD = weighted mean
# difference over the unweighted pooled SD (sqrt((s1^2 + s0^2)/2); treated SD for ATT);
# binary terms standardised with p(1 - p); variance ratio = weighted variances with the
# reliability-weights correction sum w (x - m)^2 / (sum w - sum w^2 / sum w)
wvar <- function(x, w) { m <- sum(w * x) / sum(w); sum(w * (x - m)^2) / (sum(w) - sum(w^2) / sum(w)) }
balance_terms <- function(d) {
  terms <- list(age = d$age, meno = d$meno)
  for (l in levels(d$size)) terms[[paste0("size: ", l)]] <- as.numeric(d$size == l)
  terms$nodes <- d$nodes; terms$pgr <- d$pgr; terms$er <- d$er; terms$chemo <- d$chemo
  terms$year <- d$year
  for (l in levels(d$grade_f)) terms[[paste0("grade: ", l)]] <- as.numeric(d$grade_f == l)
  terms
}
balance_tab <- function(d, a, w, estimand) {
  out <- list()
  for (nm in names(balance_terms(d))) {
    x <- balance_terms(d)[[nm]]
    x1 <- x[a == 1]; x0 <- x[a == 0]; w1 <- w[a == 1]; w0 <- w[a == 0]
    binary <- all(x %in% c(0, 1))
    if (binary) { v1 <- mean(x1) * (1 - mean(x1)); v0 <- mean(x0) * (1 - mean(x0)) }
    else { v1 <- var(x1); v0 <- var(x0) }
    sdd <- if (estimand == "ATT") sqrt(v1) else sqrt((v1 + v0) / 2)
    out[[nm]] <- list(term = nm,
      smd_before = (mean(x1) - mean(x0)) / sdd,
      smd_after = (weighted.mean(x1, w1) - weighted.mean(x0, w0)) / sdd,
      vr_before = if (binary) NA else var(x1) / var(x0),
      vr_after = if (binary) NA else wvar(x1, w1) / wvar(x0, w0))
  }
  out <- do.call(rbind, lapply(out, as.data.frame))
  ess <- c(treated = sum(w[a == 1])^2 / sum(w[a == 1]^2),
           control = sum(w[a == 0])^2 / sum(w[a == 0]^2))
  list(term = out$term, smd_before = out$smd_before, smd_after = out$smd_after,
       vr_before = out$vr_before, vr_after = out$vr_after, ess = unname(ess))
}
gold$balance <- list(
  ATE = balance_tab(rot, rot$hormon, gold$ps_linear$w_ATE, "ATE"),
  ATT = balance_tab(rot, rot$hormon, gold$ps_linear$w_ATT, "ATT"),
  ATO = balance_tab(rot, rot$hormon, gold$ps_linear$w_ATO, "ATO"))

# ------------------------------------------------------------------ carrying the propensity model
X <- model.matrix(psA); a <- rot$hormon; alpha <- coef(psA)
phi <- ps_influence(psA)
w_at <- function(al, estimand) weights_for(plogis(drop(X %*% al)), a, estimand)
carried_se <- function(infl, J, cluster = NULL) {
  tot <- infl + phi %*% t(J)
  if (!is.null(cluster)) { tot <- rowsum(tot, cluster); infl <- rowsum(infl, cluster) }
  list(se = sqrt(colSums(tot^2)), se_known = sqrt(colSums(infl^2)))
}

# ------------------------------------------------------------------ weighted Cox
cox_case <- function(estimand, ties, cluster) {
  rot$w <- w_at(alpha, estimand)
  f <- if (cluster) coxph(Surv(rtime, recur) ~ hormon, data = rot, weights = w, ties = ties,
                           cluster = year)
       else coxph(Surv(rtime, recur) ~ hormon, data = rot, weights = w, ties = ties)
  J <- jacobian(function(al) { rot$w <- w_at(al, estimand)
    coef(coxph(Surv(rtime, recur) ~ hormon, data = rot, weights = w, ties = ties)) }, alpha)
  dfb <- residuals(f, type = "dfbeta", weighted = TRUE)
  s <- carried_se(matrix(dfb, ncol = 1), J, if (cluster) rot$year else NULL)
  list(call = deparse(f$call), coef = unname(coef(f)), se_robust = unname(sqrt(diag(f$var))),
       se_naive = unname(sqrt(diag(f$naive.var))), loglik = f$loglik,
       se_known = unname(s$se_known), se_carried = unname(s$se), J = unname(J[1, ]))
}
gold$cox <- list(
  ATE_efron = cox_case("ATE", "efron", FALSE),
  ATE_breslow = cox_case("ATE", "breslow", FALSE),
  ATE_efron_cluster = cox_case("ATE", "efron", TRUE),
  ATT_efron = cox_case("ATT", "efron", FALSE),
  ATO_efron_cluster = cox_case("ATO", "efron", TRUE))
rot$w <- w_at(alpha, "ATE")
des <- svydesign(ids = ~year, weights = ~w, data = rot)
sv <- svycoxph(Surv(rtime, recur) ~ hormon, design = des)
gold$svycoxph <- list(call = "svycoxph(Surv(rtime, recur) ~ hormon, svydesign(ids = ~year, weights = ~w))",
                      coef = unname(coef(sv)), se = unname(sqrt(diag(vcov(sv)))),
                      n_clusters = length(unique(rot$year)))
# the weighted Cox model with site-like strata and a covariate (cox(weights=) alone)
fs <- coxph(Surv(rtime, recur) ~ hormon + age + nodes + strata(grade), data = rot,
            weights = w, cluster = year)
gold$cox_strata <- list(call = deparse(fs$call), coef = unname(coef(fs)),
                        se = unname(sqrt(diag(fs$var))), se_naive = unname(sqrt(diag(fs$naive.var))),
                        dfbeta_first = unname(residuals(fs, type = "dfbeta", weighted = TRUE)[1:5, ]))

# ------------------------------------------------------------------ weighted curves
curve_case <- function(estimand, competing, cluster) {
  rot$w <- w_at(alpha, estimand)
  fitc <- function(dd, infl) {
    if (competing) survfit(Surv(etime, factor(ev)) ~ hormon, data = dd, weights = w, influence = infl)
    else survfit(Surv(rtime, recur) ~ hormon, data = dd, weights = w, influence = infl)
  }
  f <- if (cluster) {
    if (competing) survfit(Surv(etime, factor(ev)) ~ hormon, data = rot, weights = w,
                           cluster = year, influence = TRUE)
    else survfit(Surv(rtime, recur) ~ hormon, data = rot, weights = w, cluster = year,
                 influence = TRUE)
  } else fitc(rot, TRUE)
  col <- if (competing) 2 else 1
  est_of <- function(ff) if (competing) ff$pstate[, col] else ff$surv
  st <- rep(seq_along(f$strata), f$strata)
  out <- list()
  for (g in 1:2) {  # hormon = 0, 1
    J <- jacobian(function(al) { rot$w <- w_at(al, estimand)
      est_of(fitc(rot, FALSE))[st == g] }, alpha)
    # influence.pstate has a first column for time 0 and is per unit of case weight
    # (survival 3.5: its column sums of squares equal std.err^2 only once multiplied by the
    # weights); influence.surv is weighted already
    infl <- if (competing) f$influence.pstate[[g]][, -1, col] else f$influence.surv[[g]]
    members <- as.integer(rownames(infl))
    if (competing && !cluster) infl <- infl * rot$w[members]
    full <- matrix(0, nrow = if (cluster) length(unique(rot$year)) else nrow(rot), ncol = ncol(infl))
    if (cluster) {
      ids <- sort(unique(rot$year)); full[match(as.numeric(rownames(infl)), ids), ] <- infl
      tot <- full + rowsum(phi, rot$year)[as.character(ids), ] %*% t(J)
    } else {
      full[members, ] <- infl
      tot <- full + phi %*% t(J)
    }
    se_std <- if (competing) f$std.err[st == g, col] else f$std.err[st == g]
    out[[paste0("hormon", g - 1)]] <- list(
      time = f$time[st == g], n_risk = if (competing) f$n.risk[st == g, 1] else f$n.risk[st == g],
      estimate = est_of(f)[st == g], se_known = sqrt(colSums(full^2)),
      se_survfit = se_std, logse = f$logse, se_carried = sqrt(colSums(tot^2)))
  }
  out
}
gold$curves <- list(
  km_ATE = curve_case("ATE", FALSE, FALSE),
  km_ATE_cluster = curve_case("ATE", FALSE, TRUE),
  aj_ATE = curve_case("ATE", TRUE, FALSE),
  aj_ATO = curve_case("ATO", TRUE, FALSE))

# ------------------------------------------------------------------ weighted rate ratio
rate_case <- function(estimand, cluster) {
  rot$w <- w_at(alpha, estimand)
  f <- glm(recur ~ hormon + offset(log(years)), family = quasipoisson, data = rot, weights = w,
           control = glm.control(epsilon = 1e-14, maxit = 100))
  J <- jacobian(function(al) { rot$w <- w_at(al, estimand)
    coef(glm(recur ~ hormon + offset(log(years)), family = quasipoisson, data = rot,
             weights = w, control = glm.control(epsilon = 1e-14, maxit = 100)))[2] }, alpha)
  infl <- (estfun(f) %*% bread(f) / nrow(rot))[, 2, drop = FALSE]
  s <- carried_se(infl, J, if (cluster) rot$year else NULL)
  v <- if (cluster) vcovCL(f, cluster = ~year, type = "HC0", cadjust = FALSE) else vcovHC(f, type = "HC0")
  list(call = deparse(f$call), coef = unname(coef(f)[2]), se_sandwich = sqrt(v[2, 2]),
       se_known = unname(s$se_known), se_carried = unname(s$se))
}
gold$rate <- list(ATE = rate_case("ATE", FALSE), ATT_cluster = rate_case("ATT", TRUE))
rot$w <- w_at(alpha, "ATE")
sg <- svyglm(recur ~ hormon + offset(log(years)), design = svydesign(ids = ~1, weights = ~w, data = rot),
             family = quasipoisson)
gold$rate$svyglm <- list(coef = unname(coef(sg)[2]), se = unname(sqrt(vcov(sg)[2, 2])))

# ------------------------------------------------------------------ binary outcome (lalonde)
psL <- glm(treat ~ age + educ + race + married + nodegree + re74 + re75, family = binomial,
           data = lal, control = glm.control(epsilon = 1e-14, maxit = 100))
XL <- model.matrix(psL); aL <- lal$treat; alL <- coef(psL); phiL <- ps_influence(psL)
wL <- function(al, estimand) weights_for(plogis(drop(XL %*% al)), aL, estimand)
binary_case <- function(estimand) {
  lal$w <- wL(alL, estimand)
  ctl <- glm.control(epsilon = 1e-14, maxit = 100)
  fits <- function(dd) list(
    rd = glm(employed ~ treat, family = gaussian, data = dd, weights = w, control = ctl),
    rr = glm(employed ~ treat, family = quasipoisson, data = dd, weights = w, control = ctl),
    or = glm(employed ~ treat, family = quasibinomial, data = dd, weights = w, control = ctl))
  f <- fits(lal)
  J <- jacobian(function(al) { lal$w <- wL(al, estimand)
    sapply(fits(lal), function(m) coef(m)[2]) }, alL)
  infl <- sapply(f, function(m) (estfun(m) %*% bread(m) / nrow(lal))[, 2])
  tot <- infl + phiL %*% t(J)
  list(coef = unname(sapply(f, function(m) coef(m)[2])),
       se_known = unname(sqrt(colSums(infl^2))), se_carried = unname(sqrt(colSums(tot^2))),
       se_hc0 = unname(sapply(f, function(m) sqrt(vcovHC(m, type = "HC0")[2, 2]))),
       risks = unname(c(weighted.mean(lal$employed[aL == 1], lal$w[aL == 1]),
                        weighted.mean(lal$employed[aL == 0], lal$w[aL == 0]))))
}
gold$binary <- list(data = "lalonde.csv", treatment = "treat", outcome = "employed",
                    covariates = c("age", "educ", "race", "married", "nodegree", "re74", "re75"),
                    ps_coef = unname(alL), ps = unname(fitted(psL)),
                    ATE = binary_case("ATE"), ATT = binary_case("ATT"), ATO = binary_case("ATO"))

# augmented IPW (doubly robust) for the ATE: logistic outcome model per arm, every nuisance
# model carried through its influence and the numerical derivative of the estimate
XO <- XL
out_fit <- function(arm) glm(employed ~ age + educ + race + married + nodegree + re74 + re75,
                             family = binomial, data = lal[aL == arm, ],
                             control = glm.control(epsilon = 1e-14, maxit = 100))
g1 <- out_fit(1); g0 <- out_fit(0)
psi <- function(al, c1, c0) {
  e <- plogis(drop(XL %*% al)); m1 <- plogis(drop(XO %*% c1)); m0 <- plogis(drop(XO %*% c0))
  y <- lal$employed
  c(mean(m1 + aL * (y - m1) / e), mean(m0 + (1 - aL) * (y - m0) / (1 - e)))
}
eff <- function(p) c(p[1] - p[2], log(p[1] / p[2]), qlogis(p[1]) - qlogis(p[2]))
p <- psi(alL, coef(g1), coef(g0))
e <- fitted(psL); m1 <- plogis(drop(XO %*% coef(g1))); m0 <- plogis(drop(XO %*% coef(g0)))
y <- lal$employed
s1 <- m1 + aL * (y - m1) / e; s0 <- m0 + (1 - aL) * (y - m0) / (1 - e)
n <- nrow(lal)
grad <- rbind(c(1, -1), c(1 / p[1], -1 / p[2]), c(1 / (p[1] * (1 - p[1])), -1 / (p[2] * (1 - p[2]))))
known <- cbind((s1 - p[1]) / n, (s0 - p[2]) / n) %*% t(grad)
infl_g <- function(fit, arm) { out <- matrix(0, n, length(coef(fit)))
  out[aL == arm, ] <- estfun(fit) %*% bread(fit) / sum(aL == arm); out }
tot <- known +
  phiL %*% t(grad %*% jacobian(function(al) psi(al, coef(g1), coef(g0)), alL)) +
  infl_g(g1, 1) %*% t(grad %*% jacobian(function(cc) psi(alL, cc, coef(g0)), coef(g1))) +
  infl_g(g0, 0) %*% t(grad %*% jacobian(function(cc) psi(alL, coef(g1), cc), coef(g0)))
gold$binary$AIPW <- list(risks = p, coef = eff(p), se_known = sqrt(colSums(known^2)),
                         se_carried = sqrt(colSums(tot^2)))

# ------------------------------------------------------------------ E-values (EValue's formulas)
threshold <- function(x) { if (x < 1) x <- 1 / x; x + sqrt(x * (x - 1)) }
toRR <- function(x, measure, rare) {
  if (rare || measure %in% c("RR", "rate ratio")) return(x)
  if (measure == "HR") return((1 - 0.5^sqrt(x)) / (1 - 0.5^sqrt(1 / x)))
  sqrt(x)
}
ev <- function(est, lo, hi, measure, rare) {
  r <- sapply(c(est, lo, hi), toRR, measure = measure, rare = rare)
  e_ci <- if (r[1] > 1) { if (r[2] < 1) 1 else threshold(r[2]) } else { if (r[3] > 1) 1 else threshold(r[3]) }
  list(estimate = est, lower = lo, upper = hi, measure = measure, rare = rare, rr = r,
       evalue_estimate = threshold(r[1]), evalue_ci = e_ci)
}
gold$evalue <- list(
  ev(0.80, 0.71, 0.91, "RR", FALSE),      # VanderWeele & Ding 2017, leukaemia example: 1.81, 1.43
  ev(3.9, 1.8, 8.7, "RR", FALSE),
  ev(0.56, 0.46, 0.69, "HR", FALSE),      # EValue's evalues.HR example, common outcome
  ev(0.56, 0.46, 0.69, "HR", TRUE),
  ev(0.86, 0.75, 0.99, "OR", FALSE),      # EValue's evalues.OR example
  ev(1.2, 0.9, 1.5, "rate ratio", FALSE)) # interval includes the null

# 10 significant digits: the tests compare to 1e-6 relative
write(toJSON(gold, digits = I(10), auto_unbox = TRUE, pretty = FALSE, na = "null"),
      "weighting_goldens.json")
cat("wrote weighting_goldens.json\n")
