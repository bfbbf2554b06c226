# Goldens for pipeline/stats/sample_size.py: base R's power.prop.test and power.t.test
# (strict = TRUE: both tails), which the normal and noncentral-t power functions must
# reproduce. Run: Rscript make_power_goldens.R  (writes power_goldens.json)
cases_prop <- list(
  list(n = 50,  p1 = 0.25, p2 = 0.45, sig.level = 0.05),
  list(n = 200, p1 = 0.25, p2 = 0.35, sig.level = 0.05),
  list(n = 31,  p1 = 0.10, p2 = 0.30, sig.level = 0.01),
  list(n = 1000, p1 = 0.50, p2 = 0.55, sig.level = 0.05)
)
prop <- lapply(cases_prop, function(a) {
  r <- do.call(power.prop.test, c(a, list(strict = TRUE)))
  c(a, list(power = r$power))
})
cases_t <- list(
  list(n = 4, delta = 1, sd = 1, sig.level = 0.05),
  list(n = 7, delta = 0.8, sd = 1, sig.level = 0.05),
  list(n = 20, delta = 0.5, sd = 1.3, sig.level = 0.05),
  list(n = 3, delta = 2, sd = 1, sig.level = 0.10)
)
tt <- lapply(cases_t, function(a) {
  r <- do.call(power.t.test, c(a, list(type = "two.sample", strict = TRUE)))
  c(a, list(df = 2 * (a$n - 1), ncp = sqrt(a$n / 2) * a$delta / a$sd, power = r$power))
})
fmt <- function(x) trimws(formatC(x, digits = 15, format = "g"))
obj <- function(l) paste0("{", paste(sprintf('"%s": %s', names(l), sapply(l, fmt)), collapse = ", "), "}")
out <- paste0('{\n"R": "', R.version.string, '",\n',
              '"power_prop_test": [\n  ', paste(sapply(prop, obj), collapse = ",\n  "), '\n],\n',
              '"power_t_test": [\n  ', paste(sapply(tt, obj), collapse = ",\n  "), '\n]\n}\n')
writeLines(out, "power_goldens.json", sep = "")
