# Reference numbers for tests/test_weights.py (precision weights, exposure,
# Pearson dispersion).  Run:  Rscript tests/reference/weights.R
# Writes the data (weights_*_data.csv) and R's numbers (weights_ref.csv, long
# format: model, quantity, term, value) next to this script.
suppressMessages(library(MASS))
here <- dirname(normalizePath(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
f17 <- function(x) sprintf("%.17g", x)
rows <- list()
add <- function(model, quantity, term, value) {
  rows[[length(rows) + 1]] <<- data.frame(model = model, quantity = quantity,
                                          term = term, value = f17(value))
}
ctl <- glm.control(epsilon = 1e-15, maxit = 100)
# IRLS of a non-canonical link converges linearly and glm() stops when the
# deviance stops changing (coefficients still ~1e-9 off): restarting from the
# previous coefficients takes further IRLS steps to the fixed point (the score
# sum(v x (y/mu - 1)) goes from ~1e-8 to the rounding level)
polish <- function(fit, times = 60) {
  for (i in seq_len(times)) fit <- suppressWarnings(update(fit, start = coef(fit)))
  fit
}

# --- Gaussian, identity link, precision weights v: y_i ~ N(mu_i, sigma^2 / v_i)
set.seed(20261127)
n <- 40
g <- data.frame(x1 = rnorm(n), x2 = runif(n, -1, 2), v = rgamma(n, 2, 1) + 0.05)
g$y <- 1 + 0.5 * g$x1 - 0.8 * g$x2 + rnorm(n, sd = 0.7 / sqrt(g$v))
g <- data.frame(lapply(g, function(x) as.numeric(f17(x))))  # exactly the CSV's values
write.csv(data.frame(lapply(g, f17)), file.path(here, "weights_gaussian_data.csv"),
          row.names = FALSE, quote = FALSE)
lmf <- lm(y ~ x1 + x2, data = g, weights = v)
gf <- suppressWarnings(glm(y ~ x1 + x2, family = gaussian(), data = g, weights = v, control = ctl))
sl <- summary(lmf); sg <- summary(gf)
add("gaussian", "coef", names(coef(lmf)), coef(lmf))
add("gaussian", "se_lm", names(coef(lmf)), sl$coefficients[, 2])
add("gaussian", "se_glm", names(coef(gf)), sg$coefficients[, 2])
add("gaussian", "dispersion", "", sg$dispersion)
add("gaussian", "deviance", "", deviance(gf))
add("gaussian", "null_deviance", "", gf$null.deviance)
add("gaussian", "loglik", "", as.numeric(logLik(lmf)))
add("gaussian", "df_residual", "", gf$df.residual)

# --- Gamma, log link, precision weights v: shape_i = shape * v_i
m <- 50
h <- data.frame(x1 = rnorm(m), x2 = rbinom(m, 1, 0.4), v = runif(m, 0.3, 3))
mu <- exp(0.7 + 0.4 * h$x1 - 0.5 * h$x2)
h$y <- rgamma(m, shape = 2.5 * h$v, rate = 2.5 * h$v / mu)
h <- data.frame(lapply(h, function(x) as.numeric(f17(x))))  # exactly the CSV's values
write.csv(data.frame(lapply(h, f17)), file.path(here, "weights_gamma_data.csv"),
          row.names = FALSE, quote = FALSE)
hf <- suppressWarnings(glm(y ~ x1 + x2, family = Gamma(link = "log"), data = h, weights = v,
                           control = ctl))
hf <- polish(hf)
sh <- summary(hf)
add("gamma", "score_max", "", max(abs(colSums(model.matrix(hf) * h$v * (h$y / fitted(hf) - 1)))))
add("gamma", "coef", names(coef(hf)), coef(hf))
# R's summary.glm standard errors: expected information x Pearson dispersion
add("gamma", "se_summary", names(coef(hf)), sh$coefficients[, 2])
add("gamma", "dispersion", "", sh$dispersion)
add("gamma", "deviance", "", deviance(hf))
add("gamma", "null_deviance", "", hf$null.deviance)
add("gamma", "df_residual", "", hf$df.residual)
gs <- gamma.shape(hf, it.lim = 100, eps.max = 1e-12)  # MLE of the shape (prior weights used)
add("gamma", "shape_mle", "", gs$alpha)

# --- Poisson with exposure: MASS::Insurance, offset(log(Holders))
ins <- Insurance
pf <- suppressWarnings(glm(Claims ~ District + Group + Age + offset(log(Holders)),
                           family = poisson, data = ins, control = ctl))
X <- model.matrix(pf)
d <- data.frame(X, Claims = ins$Claims, Holders = ins$Holders, check.names = TRUE)
write.csv(data.frame(lapply(d, f17)), file.path(here, "weights_insurance_data.csv"),
          row.names = FALSE, quote = FALSE)
sp <- summary(pf)
add("insurance", "coef", colnames(X), coef(pf))
add("insurance", "se", colnames(X), sp$coefficients[, 2])
add("insurance", "deviance", "", deviance(pf))
add("insurance", "null_deviance", "", pf$null.deviance)
add("insurance", "loglik", "", as.numeric(logLik(pf)))

out <- do.call(rbind, rows)
write.csv(out, file.path(here, "weights_ref.csv"), row.names = FALSE, quote = TRUE)
