# Reference numbers for tests/test_formula.py (R's glm on R's own data sets).
# Run from the repository root:  Rscript tests/reference/formula.R
# Writes the data sets (formula_<name>.csv), the factor level orders
# (formula_levels.csv) and every reference number in long form
# (formula_ref.csv: model, quantity, name, value), 17 significant digits.
options(stringsAsFactors = FALSE)
out <- "tests/reference"

# esoph's factors are ordered (R would use polynomial contrasts): make them
# plain factors with the same level order, so treatment contrasts apply
esoph2 <- esoph
for (v in c("agegp", "alcgp", "tobgp")) {
  esoph2[[v]] <- factor(as.character(esoph2[[v]]), levels = levels(esoph[[v]]))
}
data <- list(
  warpbreaks = warpbreaks, mtcars = mtcars, airquality = airquality,
  esoph = esoph2
)
for (nm in names(data)) {
  write.csv(data[[nm]], file.path(out, paste0("formula_", nm, ".csv")),
            row.names = FALSE, na = "")
}
lev <- do.call(rbind, lapply(names(data), function(nm) {
  d <- data[[nm]]
  do.call(rbind, lapply(names(d)[sapply(d, is.factor)], function(v) {
    data.frame(dataset = nm, column = v, position = seq_along(levels(d[[v]])),
               level = levels(d[[v]]))
  }))
}))
write.csv(lev, file.path(out, "formula_levels.csv"), row.names = FALSE)

models <- list(
  warpbreaks = list(
    fit = glm(breaks ~ wool * tension, family = poisson, data = warpbreaks),
    new = data.frame(wool = factor(c("A", "B", "B"), levels = c("A", "B")),
                     tension = factor(c("H", "L", "M"), levels = c("L", "M", "H")))
  ),
  mtcars = list(
    fit = glm(mpg ~ wt + factor(cyl) + wt:hp, family = gaussian, data = mtcars),
    new = data.frame(wt = c(2.5, 3.2, 4.1), cyl = c(4, 6, 8), hp = c(90, 120, 210))
  ),
  mtcars_terms = list(
    fit = glm(mpg ~ 0 + wt + I(wt^2) + poly(hp, 2) + C(factor(cyl), contr.sum) +
                factor(gear), family = gaussian, data = mtcars),
    new = data.frame(wt = c(2.5, 3.2, 4.1), cyl = c(4, 6, 8), hp = c(90, 120, 210),
                     gear = c(4, 3, 5))
  ),
  esoph = list(
    fit = glm(cbind(ncases, ncontrols) ~ agegp + alcgp, family = binomial,
              data = esoph2),
    new = data.frame(agegp = factor(c("25-34", "55-64", "75+"), levels = levels(esoph2$agegp)),
                     alcgp = factor(c("0-39g/day", "80-119", "120+"), levels = levels(esoph2$alcgp)))
  ),
  airquality = list(
    fit = glm(Ozone ~ Solar.R + Wind + factor(Month) + offset(log(Temp)),
              family = poisson, data = airquality),
    new = data.frame(Solar.R = c(100, 250, 300), Wind = c(5, 10, 15),
                     Month = c(5, 7, 9), Temp = c(60, 80, 90))
  )
)

# converge tightly: summary.glm's standard errors use the working weights of
# the last IRLS iteration, so R's default epsilon 1e-8 leaves them ~1e-6 off
for (nm in names(models)) {
  models[[nm]]$fit <- update(models[[nm]]$fit,
                             control = glm.control(epsilon = 1e-15, maxit = 100))
}

f17 <- function(x) sprintf("%.17g", x)
rows <- list()
add <- function(model, quantity, name, value) {
  rows[[length(rows) + 1]] <<- data.frame(model = model, quantity = quantity,
                                          name = name, value = f17(value))
}
for (nm in names(models)) {
  fit <- models[[nm]]$fit
  s <- summary(fit)$coefficients
  add(nm, "coef", rownames(s), s[, "Estimate"])
  add(nm, "stderr", rownames(s), s[, "Std. Error"])
  add(nm, "deviance", "", deviance(fit))
  add(nm, "null_deviance", "", fit$null.deviance)
  add(nm, "df_residual", "", fit$df.residual)
  add(nm, "df_null", "", fit$df.null)
  add(nm, "aic", "", AIC(fit))
  add(nm, "loglik", "", as.numeric(logLik(fit)))
  add(nm, "n_deleted", "", length(fit$na.action))
  add(nm, "nobs", "", nobs(fit))
  new <- models[[nm]]$new
  for (type in c("link", "response")) {
    p <- predict(fit, newdata = new, type = type, se.fit = TRUE)
    add(nm, paste0("predict_", type), seq_len(nrow(new)), p$fit)
    add(nm, paste0("predict_se_", type), seq_len(nrow(new)), p$se.fit)
  }
  write.csv(new, file.path(out, paste0("formula_new_", nm, ".csv")), row.names = FALSE)
}
write.csv(do.call(rbind, rows), file.path(out, "formula_ref.csv"), row.names = FALSE)
