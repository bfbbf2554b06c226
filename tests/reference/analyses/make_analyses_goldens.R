# Golden values for pipeline/analyses (the analysis-plan layer's own computations; the
# estimators under them have their own goldens in tests/reference/).
# Run from this folder:  Rscript make_analyses_goldens.R
# Writes cbpp_people.csv, veteran.csv and analyses_goldens.json.
#
# 1. Standardised (g-computation) marginal risk difference and risk ratio from a logistic
#    model with a few-cluster covariance (clubSandwich CR2), delta-method standard errors:
#    lme4::cbpp expanded to one row per animal (15 herds), exposure = period 1, covariate
#    = herd size. The gradient is computed twice: analytically and by central differences
#    (independent of the formula the Python code uses).
# 2. Subgroup interaction: survival::veteran, Cox model trt x celltype (model-based
#    variance), Wald chi-square of the interaction terms and the hazard ratio of trt within
#    each cell type with its 95% interval.
suppressPackageStartupMessages({library(lme4); library(clubSandwich); library(survival);
                                library(jsonlite)})
options(digits = 17)

rows <- lapply(seq_len(nrow(cbpp)), function(i) {
  r <- cbpp[i, ]
  data.frame(herd = as.character(r$herd), period = as.integer(r$period),
             y = c(rep(1L, r$incidence), rep(0L, r$size - r$incidence)), size = r$size)
})
d <- do.call(rbind, rows)
d$od <- as.integer(d$period == 1)
write.csv(d[, c("herd", "od", "size", "y")], "cbpp_people.csv", row.names = FALSE)

fit <- glm(y ~ od + size, family = binomial, data = d,
           control = glm.control(epsilon = 1e-14, maxit = 100))  # converged as the Python fit is
V <- as.matrix(vcovCR(fit, cluster = d$herd, type = "CR2"))
b <- coef(fit)
X <- model.matrix(fit)
means <- function(beta) {
  X1 <- X; X1[, "od"] <- 1; X0 <- X; X0[, "od"] <- 0
  c(mean(plogis(X1 %*% beta)), mean(plogis(X0 %*% beta)))
}
m <- means(b)
rd <- function(beta) { m <- means(beta); m[1] - m[2] }
lrr <- function(beta) { m <- means(beta); log(m[1] / m[2]) }
num_grad <- function(f, beta, h = 1e-6) sapply(seq_along(beta), function(j) {
  e <- rep(0, length(beta)); e[j] <- h; (f(beta + e) - f(beta - e)) / (2 * h)
})
X1 <- X; X1[, "od"] <- 1; X0 <- X; X0[, "od"] <- 0
p1 <- plogis(X1 %*% b); p0 <- plogis(X0 %*% b)
g1 <- colMeans(as.vector(p1 * (1 - p1)) * X1); g0 <- colMeans(as.vector(p0 * (1 - p0)) * X0)
g_rd <- g1 - g0; g_lrr <- g1 / m[1] - g0 / m[2]
std <- list(
  call = "glm(y ~ od + size, binomial); vcovCR(fit, cluster = herd, type = 'CR2'); g-computation",
  coef = unname(b), risk1 = m[1], risk0 = m[2], rd = m[1] - m[2], log_rr = log(m[1] / m[2]),
  se_rd = sqrt(drop(t(g_rd) %*% V %*% g_rd)), se_log_rr = sqrt(drop(t(g_lrr) %*% V %*% g_lrr)),
  se_rd_numeric = sqrt(drop(num_grad(rd, b) %*% V %*% num_grad(rd, b))),
  se_log_rr_numeric = sqrt(drop(num_grad(lrr, b) %*% V %*% num_grad(lrr, b))))

vet <- survival::veteran
vet$od <- as.integer(vet$trt == 2)
vet$celltype <- as.character(vet$celltype)
write.csv(vet[, c("time", "status", "od", "celltype")], "veteran.csv", row.names = FALSE)
vet$celltype <- factor(vet$celltype, levels = c("smallcell", "squamous", "adeno", "large"))
cf <- coxph(Surv(time, status) ~ od * celltype, data = vet, ties = "efron")
bb <- coef(cf); VV <- vcov(cf)
ii <- grep("^od:", names(bb))
wald <- drop(t(bb[ii]) %*% solve(VV[ii, ii]) %*% bb[ii])
hr <- list()
for (lv in levels(vet$celltype)) {
  g <- setNames(rep(0, length(bb)), names(bb)); g["od"] <- 1
  if (lv != "smallcell") g[paste0("od:celltype", lv)] <- 1
  est <- sum(g * bb); se <- sqrt(drop(t(g) %*% VV %*% g))
  hr[[lv]] <- c(exp(est), exp(est - qnorm(0.975) * se), exp(est + qnorm(0.975) * se))
}
sub <- list(call = "coxph(Surv(time, status) ~ od * celltype, data = veteran)",
            wald_chisq = wald, df = length(ii), p = pchisq(wald, length(ii), lower.tail = FALSE),
            hr = hr)
writeLines(toJSON(list(generated_by = "make_analyses_goldens.R", r_version = R.version.string,
                       clubSandwich = as.character(packageVersion("clubSandwich")),
                       survival = as.character(packageVersion("survival")),
                       standardised = std, subgroup = sub),
                  digits = NA, auto_unbox = TRUE, pretty = TRUE), "analyses_goldens.json")
