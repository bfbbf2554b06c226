# Goldens for pipeline.stats.impute (tests/reference/test_impute_reference.py).
# R 4.2, mice 3.15. Run from this folder:  Rscript make_impute_goldens.R
#
# 1. the data: a fixed two-arm dataset with a binary outcome y missing at random
#    (depending on arm and the last status before the window), written to rtw_mi.csv;
# 2. mice's augmented logistic imputation model (mice:::augment + glm.fit quasibinomial,
#    as mice.impute.logreg fits it) per arm: coefficients and cov.unscaled (deterministic);
# 3. mice::pool.scalar on fixed estimates and variances (deterministic);
# 4. a whole imputation, by arm (mice on each arm, rbind), M = 1000, logreg, then
#    the difference in proportions and glm(y ~ arm + age) pooled by mice::pool:
#    the pooled estimates and total variances (random: compared within Monte Carlo error).
#    (mice warns that logreg is for categorical data: y is kept 0/1 numeric on purpose, so
#    that complete() returns numbers; logreg imputes it as TRUE/FALSE = 1/0 all the same.)
suppressPackageStartupMessages(library(mice))
library(jsonlite)

set.seed(20261206)
n <- 600
arm <- rbinom(n, 1, 0.5)
site <- sample(c("s1", "s2", "s3", "s4"), n, replace = TRUE)
last <- sample(c("none", "unknown", "work"), n, replace = TRUE, prob = c(0.55, 0.15, 0.30))
age <- round(rnorm(n, 31, 10))
lp <- -1.2 + 0.6 * arm + 1.5 * (last == "work") - 0.3 * (last == "unknown") +
  0.02 * (age - 31) + c(s1 = 0, s2 = 0.2, s3 = -0.3, s4 = 0.1)[site]
y <- rbinom(n, 1, plogis(lp))
pmiss <- plogis(-1.3 + 0.5 * arm - 1.0 * (last == "work") + 0.8 * (last == "unknown"))
y[runif(n) < pmiss] <- NA
d <- data.frame(id = seq_len(n), arm = arm, site = site, last = last, age = age, y = y)
write.csv(d, "rtw_mi.csv", row.names = FALSE, na = "")

# numeric design as pipeline.stats.impute builds it: text columns as treatment dummies,
# sorted levels, the first the reference; the predictors in the order site, last, age
dm <- data.frame(
  site_s2 = as.numeric(site == "s2"), site_s3 = as.numeric(site == "s3"),
  site_s4 = as.numeric(site == "s4"),
  last_unknown = as.numeric(last == "unknown"), last_work = as.numeric(last == "work"),
  age = age, y = y)

fits <- list()
for (a in 0:1) {
  x <- as.matrix(dm[arm == a, 1:6])
  yy <- dm$y[arm == a]
  ry <- !is.na(yy)
  aug <- mice:::augment(yy, ry, x, !ry)
  xx <- cbind(1, as.matrix(aug$x))
  fit <- glm.fit(x = xx[aug$ry, , drop = FALSE], y = aug$y[aug$ry],
                 family = quasibinomial(link = logit), weights = aug$w[aug$ry],
                 control = glm.control(epsilon = 1e-14, maxit = 100))
  fs <- summary.glm(fit)
  fits[[paste0("arm", a)]] <- list(coef = unname(coef(fit)),
                                   cov_unscaled = unname(fs$cov.unscaled),
                                   n_aug = sum(!seq_along(aug$y) %in% seq_along(yy)))
}

Q <- c(0.112, 0.135, 0.098, 0.121, 0.141, 0.104, 0.117)
U <- c(0.0021, 0.0024, 0.0019, 0.0022, 0.0023, 0.0020, 0.0022)
ps <- lapply(list(inf = Inf, df100 = 100, df6 = 6), function(n) {
  r <- pool.scalar(Q, U, n = n, k = 0)
  list(qbar = r$qbar, t = r$t, df = r$df, fmi = r$fmi, b = r$b, ubar = r$ubar, r = r$r)
})

M <- 1000
meth <- c(site_s2 = "", site_s3 = "", site_s4 = "", last_unknown = "", last_work = "",
          age = "", y = "logreg")
imps <- lapply(0:1, function(a) {
  mice(dm[arm == a, ], m = M, method = meth, maxit = 1, seed = 2026 + a, printFlag = FALSE)
})
imp <- rbind(imps[[1]], imps[[2]])
armv <- c(arm[arm == 0], arm[arm == 1])
agev <- c(age[arm == 0], age[arm == 1])
rd <- t(sapply(seq_len(M), function(j) {
  yc <- complete(imp, j)$y
  p1 <- mean(yc[armv == 1]); p0 <- mean(yc[armv == 0])
  n1 <- sum(armv == 1); n0 <- sum(armv == 0)
  c(p1 - p0, p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
}))
prd <- pool.scalar(rd[, 1], rd[, 2], n = Inf)
lor <- t(sapply(seq_len(M), function(j) {
  yc <- complete(imp, j)$y
  f <- glm(yc ~ armv + agev, family = binomial)
  c(coef(f)[2], vcov(f)[2, 2])
}))
plor <- pool.scalar(lor[, 1], lor[, 2], n = Inf)
golden <- list(
  mice_version = as.character(packageVersion("mice")), r_version = R.version.string,
  fits = fits, pool_scalar = list(Q = Q, U = U, results = ps),
  mi = list(m = M,
            rd = list(qbar = prd$qbar, t = prd$t, b = prd$b, ubar = prd$ubar, df = prd$df),
            log_or = list(qbar = plor$qbar, t = plor$t, b = plor$b, ubar = plor$ubar,
                          df = plor$df)))
writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "impute_goldens.json")
