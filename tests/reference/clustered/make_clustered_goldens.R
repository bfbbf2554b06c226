# Golden values for pipeline.stats.clustered (GLMs with few-cluster inference) and the
# delete-one-site jackknife of pipeline.stats.cox / rate_ratio.
# Run from this folder:  Rscript make_clustered_goldens.R
# Writes the input CSVs and clustered_goldens.json. Needs R >= 4.2 with clubSandwich,
# geepack, lme4, glmmTMB (data only), MASS, survival, jsonlite.
suppressPackageStartupMessages({
  library(clubSandwich); library(geepack); library(lme4); library(MASS); library(survival)
  library(jsonlite)
})
options(digits = 17)
ctl <- glm.control(epsilon = 1e-14, maxit = 100)
gold <- list(generated_by = "make_clustered_goldens.R", r_version = R.version.string,
             clubSandwich_version = as.character(packageVersion("clubSandwich")),
             geepack_version = as.character(packageVersion("geepack")),
             survival_version = as.character(packageVersion("survival")))

# ------------------------------------------------------------------ data
# lme4::cbpp (contagious bovine pleuropneumonia: 15 herds, 4 periods) one row per animal
rows <- cbpp[rep(seq_len(nrow(cbpp)), cbpp$size), c("herd", "period")]
rows$y <- unlist(lapply(seq_len(nrow(cbpp)), function(i)
  c(rep(1L, cbpp$incidence[i]), rep(0L, cbpp$size[i] - cbpp$incidence[i]))))
rows$herd <- as.integer(as.character(rows$herd))
write.csv(rows, "cbpp_animals.csv", row.names = FALSE)
cb <- read.csv("cbpp_animals.csv"); cb$period <- factor(cb$period); cb$herd_f <- factor(cb$herd)

# lme4::sleepstudy (reaction times, 18 subjects x 10 days)
sl <- sleepstudy; sl$Subject <- as.integer(as.character(sl$Subject))
write.csv(sl, "sleepstudy.csv", row.names = FALSE)
sl <- read.csv("sleepstudy.csv")

# MASS::epil (seizure counts, 59 subjects x 4 visits)
ep <- epil[, c("y", "trt", "base", "age", "V4", "subject", "period")]
ep$lbase <- log(ep$base / 4); ep$lage <- log(ep$age)
ep$trt <- as.character(ep$trt)
write.csv(ep, "epil.csv", row.names = FALSE)
ep <- read.csv("epil.csv")

# glmmTMB::Salamanders (salamander counts, 7 species/life stages)
data("Salamanders", package = "glmmTMB")
sa <- Salamanders[, c("site", "spp", "cover", "count")]
sa$site <- as.character(sa$site); sa$spp <- as.character(sa$spp)
# the 12 sites not affected by mountaintop mining ("R-"): every site has counts, so a site
# fixed effect has a finite estimate
sa <- sa[startsWith(sa$site, "R-"), ]
write.csv(sa, "salamanders.csv", row.names = FALSE)
sa <- read.csv("salamanders.csv")

# ------------------------------------------------------------------ helpers
cs_case <- function(fit, cluster, types = c("CR1", "CR2", "CR3")) {
  out <- list(terms = names(coef(fit)), coef = unname(coef(fit)),
              se_model = unname(sqrt(diag(vcov(fit)))))
  for (ty in types) {
    V <- vcovCR(fit, cluster = cluster, type = ty)
    ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
    out[[ty]] <- list(vcov = unname(as.matrix(V)), se = unname(ct$SE),
                      df_satterthwaite = unname(ct$df_Satt), p_satterthwaite = unname(ct$p_Satt))
  }
  out
}

# Mancl-DeRouen and Kauermann-Carroll by formula (as geesmv::GEE.var.md / GEE.var.kc,
# which Debian does not package) on a geeglm fit with independence working correlation:
# V = M sum_i D_i' V_i^-1 A_i r_i r_i' A_i' V_i^-1 D_i M, M = (sum D' V^-1 D)^-1,
# A_i = (I - H_i)^-1 (MD) or (I - H_i)^-1/2 (KC), H_i = D_i M D_i' V_i^-1.
gee_md_kc <- function(gfit, X, cluster, variance) {
  mu <- as.vector(fitted(gfit)); eta <- as.vector(gfit$linear.predictors)
  d <- gfit$family$mu.eta(eta); v <- variance(mu)
  D <- X * d; r <- as.vector(gfit$y) - mu
  M <- solve(crossprod(D, D / v))
  meat <- list(MD = 0, KC = 0, CR0 = 0)
  msqrt_inv <- function(A) { e <- eigen(A); Q <- e$vectors
    Re(Q %*% diag(1 / sqrt(e$values), nrow(A)) %*% solve(Q)) }
  for (g in unique(cluster)) {
    i <- cluster == g
    Dj <- D[i, , drop = FALSE]; Vinv <- diag(1 / v[i], sum(i))
    IH <- diag(sum(i)) - Dj %*% M %*% t(Dj) %*% Vinv
    for (k in c("MD", "KC", "CR0")) {
      A <- switch(k, MD = solve(IH), KC = msqrt_inv(IH), CR0 = diag(sum(i)))
      u <- t(Dj) %*% Vinv %*% A %*% r[i]
      meat[[k]] <- meat[[k]] + u %*% t(u)
    }
  }
  lapply(meat, function(m) { V <- M %*% m %*% M; list(vcov = unname(V), se = unname(sqrt(diag(V)))) })
}

# ------------------------------------------------------------------ clubSandwich cases
fit <- glm(y ~ period, family = binomial, data = cb, control = ctl)
gold$cbpp_logit <- c(list(data = "cbpp_animals.csv", outcome = "y", covariates = "period",
                          family = "binomial", link = "logit", cluster = "herd"),
                     cs_case(fit, cb$herd))
g <- geeglm(y ~ period, family = binomial, data = cb, id = herd, corstr = "independence",
            control = geese.control(epsilon = 1e-14, maxit = 100))
stopifnot(max(abs(coef(g) - coef(fit))) < 1e-8)
gold$cbpp_logit$gee <- c(list(se_geeglm = unname(sqrt(diag(vcov(g))))),
                         gee_md_kc(g, model.matrix(fit), cb$herd, function(m) m * (1 - m)))

fit <- glm(y ~ period, family = binomial(link = "log"), data = cb, control = ctl,
           start = c(-1.5, 0, 0, 0))
gold$cbpp_log <- c(list(data = "cbpp_animals.csv", outcome = "y", covariates = "period",
                        family = "binomial", link = "log", cluster = "herd"),
                   cs_case(fit, cb$herd))

fit <- glm(Reaction ~ Days, family = gaussian, data = sl, control = ctl)
gold$sleep_gaussian <- c(list(data = "sleepstudy.csv", outcome = "Reaction", covariates = "Days",
                              family = "gaussian", link = "identity", cluster = "Subject"),
                         cs_case(fit, sl$Subject))

fit <- glm(y ~ trt + lbase + lage + V4, family = poisson, data = ep, control = ctl)
gold$epil_poisson <- c(list(data = "epil.csv", outcome = "y", covariates = c("trt", "lbase", "lage", "V4"),
                            family = "poisson", link = "log", cluster = "subject"),
                       cs_case(fit, ep$subject))
g <- geeglm(y ~ trt + lbase + lage + V4, family = poisson, data = ep, id = subject,
            corstr = "independence", control = geese.control(epsilon = 1e-14, maxit = 100))
stopifnot(max(abs(coef(g) - coef(fit))) < 1e-8)
gold$epil_poisson$gee <- c(list(se_geeglm = unname(sqrt(diag(vcov(g))))),
                           gee_md_kc(g, model.matrix(fit), ep$subject, function(m) m))

nb <- glm.nb(count ~ spp + cover, data = sa, control = ctl)
gold$salamander_negbin <- c(list(data = "salamanders.csv", outcome = "count", covariates = c("spp", "cover"),
                                 family = "negbin", link = "log", cluster = "site", theta = nb$theta),
                            cs_case(nb, sa$site))

# ------------------------------------------------------------------ delete-one-site jackknife
# (J - 1) / J sum_j (b_j - mean b)(b_j - mean b)' over refits without site j
jack <- function(refit, sites) {
  B <- t(sapply(sites, refit))
  dev <- sweep(B, 2, colMeans(B))
  J <- length(sites)
  (J - 1) / J * crossprod(dev)
}
# GLM with the site (herd) as a fixed effect: only period is estimable in every replicate
fit <- glm(y ~ period + herd_f, family = binomial, data = cb, control = ctl)
Vj <- jack(function(h) { dd <- droplevels(cb[cb$herd != h, ])
  coef(glm(y ~ period + herd_f, family = binomial, data = dd, control = ctl))[2:4] }, sort(unique(cb$herd)))
gold$cbpp_site_jackknife <- list(data = "cbpp_animals.csv", outcome = "y", covariates = c("period", "herd_f"),
  family = "binomial", cluster = "herd", terms = names(coef(fit))[2:4], coef = unname(coef(fit)[2:4]),
  vcov = unname(Vj), se = unname(sqrt(diag(Vj))))

# negative binomial rate model with site fixed effects (cover is a site-level covariate, so
# it is absorbed by them), theta held at the full fit's in the refits (as rate_ratio does)
nb <- glm.nb(count ~ spp + site, data = sa, control = ctl)
th <- nb$theta
Vj <- jack(function(s) { dd <- sa[sa$site != s, ]
  coef(glm(count ~ spp + site, family = negative.binomial(th), data = dd, control = ctl))[2:7] },
  sort(unique(sa$site)))
gold$salamander_site_jackknife <- list(data = "salamanders.csv", count = "count", covariates = c("spp", "site"),
  cluster = "site", theta = th, terms = names(coef(nb))[2:7], coef = unname(coef(nb)[2:7]),
  vcov = unname(Vj), se = unname(sqrt(diag(Vj))))

# Cox model stratified by institution, jackknife deleting one institution (stratum) at a time
lu <- survival::lung[!is.na(survival::lung$inst), c("inst", "time", "status", "age", "sex")]
lu$status <- lu$status - 1L; lu$female <- as.integer(lu$sex == 2)
write.csv(lu, "lung_inst.csv", row.names = FALSE)
lu <- read.csv("lung_inst.csv")
cfit <- coxph(Surv(time, status) ~ female + age + strata(inst), data = lu, ties = "efron",
              control = coxph.control(eps = 1e-12, toler.chol = 1e-14, iter.max = 100))
Vj <- jack(function(s) coef(coxph(Surv(time, status) ~ female + age + strata(inst),
                                   data = lu[lu$inst != s, ], ties = "efron",
                                   control = coxph.control(eps = 1e-12, toler.chol = 1e-14, iter.max = 100))),
           sort(unique(lu$inst)))
gold$lung_site_jackknife <- list(data = "lung_inst.csv", covariates = c("female", "age"),
  strata = "inst", cluster = "inst", terms = names(coef(cfit)), coef = unname(coef(cfit)),
  vcov = unname(Vj), se = unname(sqrt(diag(Vj))))

writeLines(toJSON(gold, digits = NA, auto_unbox = TRUE, pretty = TRUE), "clustered_goldens.json")
