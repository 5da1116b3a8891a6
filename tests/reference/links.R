# Reference fits for tests/test_links.py: R's glm (and MASS::glm.nb) with every
# link of the GLM families, on R's own data sets.
# Run from this folder:  Rscript links.R
# The formulas keep an intercept (y ~ X[, -1]) so that R's null deviance is
# the intercept-only model's.
# Writes links_<data>.csv (design matrix columns x0.., y, trials) and links_ref.csv
# (one row per fit and coefficient). Expected-information standard errors are
# R's summary.glm ones; for Gamma with dispersion = 1/shape (the MLE of the
# shape, MASS::gamma.shape), for Gaussian R's default (RSS / (n - p)), for the
# negative binomial glm.nb's (theta at its MLE). logLik for Gamma is the
# full likelihood at the MLE shape (dgamma), not R's deviance-based logLik.
suppressMessages(library(MASS))
ctl <- glm.control(epsilon = 1e-14, maxit = 100)

write_data <- function(name, X, y, trials = NULL) {
  d <- as.data.frame(X)
  names(d) <- paste0("x", seq_len(ncol(X)) - 1)
  d$y <- y
  if (!is.null(trials)) d$trials <- trials
  write.csv(d, paste0("links_", name, ".csv"), row.names = FALSE)
}

rows <- list()
add <- function(data, family, link, fit, se, loglik, extra = NA) {
  cf <- coef(fit)
  rows[[length(rows) + 1]] <<- data.frame(
    data = data, family = family, link = link, term = seq_along(cf) - 1,
    coef = sprintf("%.17g", cf), se_expected = sprintf("%.17g", se),
    deviance = sprintf("%.17g", deviance(fit)),
    null_deviance = sprintf("%.17g", fit$null.deviance),
    loglik = sprintf("%.17g", loglik), extra = sprintf("%.17g", extra),
    converged = fit$converged
  )
}
try_fit <- function(expr) tryCatch(expr, error = function(e) { message(conditionMessage(e)); NULL })
# glm stops when the relative change of the deviance is below epsilon, which
# for slowly converging Fisher scoring (cauchit) can leave the score at 1e-6:
# restart IRLS from its own answer until the coefficients stop moving
refine <- function(f) {
  if (is.null(f) || !f$converged) return(f)
  for (i in 1:50) {
    g <- update(f, start = coef(f))
    done <- max(abs(coef(g) - coef(f)) / (1 + abs(coef(f)))) < 1e-15
    f <- g
    if (done) break
  }
  f
}

# Bernoulli: infert
# (with parity too, the log-link MLE has a fitted mean of 1 - 2e-16: on the edge)
X <- model.matrix(~ age + spontaneous + induced, infert)
yb <- infert$case
write_data("infert", X, yb)
# the log link needs a start inside mu < 1 (R: "please supply starting values")
st <- function(lk, X, p0) if (lk == "log") c(log(p0), rep(0, ncol(X) - 1)) else NULL
for (lk in c("logit", "probit", "cloglog", "cauchit", "log")) {
  f <- refine(try_fit(glm(yb ~ X[, -1], family = binomial(link = lk), control = ctl,
                   start = st(lk, X, mean(yb)))))
  if (is.null(f) || !f$converged) { message("infert ", lk, ": no fit"); next }
  add("infert", "Bernoulli", lk, f, sqrt(diag(vcov(f))), as.numeric(logLik(f)))
}

# Binomial with trials: esoph, factor levels as scores
X <- cbind(1, as.numeric(esoph$agegp), as.numeric(esoph$alcgp), as.numeric(esoph$tobgp))
ys <- esoph$ncases; tr <- esoph$ncases + esoph$ncontrols
write_data("esoph", X, ys, tr)
for (lk in c("logit", "probit", "cloglog", "cauchit", "log")) {
  f <- refine(try_fit(glm(cbind(ys, tr - ys) ~ X[, -1], family = binomial(link = lk), control = ctl,
                   start = st(lk, X, sum(ys) / sum(tr)))))
  if (is.null(f) || !f$converged) { message("esoph ", lk, ": no fit"); next }
  add("esoph", "Binomial", lk, f, sqrt(diag(vcov(f))), as.numeric(logLik(f)))
}

# Poisson: warpbreaks and InsectSprays
X <- model.matrix(~ wool + tension, warpbreaks)
yw <- warpbreaks$breaks
write_data("warpbreaks", X, yw)
X2 <- model.matrix(~ spray, InsectSprays)
yi <- InsectSprays$count
write_data("insects", X2, yi)
for (lk in c("log", "identity", "sqrt")) {
  f <- refine(try_fit(glm(yw ~ X[, -1], family = poisson(link = lk), control = ctl)))
  if (!is.null(f) && f$converged) add("warpbreaks", "Poisson", lk, f, sqrt(diag(vcov(f))), as.numeric(logLik(f)))
  f <- refine(try_fit(glm(yi ~ X2[, -1], family = poisson(link = lk), control = ctl)))
  if (!is.null(f) && f$converged) add("insects", "Poisson", lk, f, sqrt(diag(vcov(f))), as.numeric(logLik(f)))
}

# Gamma and Gaussian: mtcars mpg ~ wt + hp
X <- model.matrix(~ wt + hp, mtcars)
ym <- mtcars$mpg
write_data("mtcars", X, ym)
for (lk in c("log", "inverse", "identity")) {
  f <- refine(try_fit(glm(ym ~ X[, -1], family = Gamma(link = lk), control = ctl)))
  if (is.null(f) || !f$converged) { message("Gamma ", lk, ": no fit"); next }
  # the MLE of the shape given the fitted means (they do not depend on it):
  # sum(log k + 1 - digamma(k) + log(y / mu) - y / mu) = 0
  mu <- fitted(f)
  s <- sum(log(ym / mu) - ym / mu + 1)
  k <- exp(uniroot(function(u) length(ym) * (u - digamma(exp(u))) + s,
                   c(-5, 20), tol = 1e-15)$root)
  se <- sqrt(diag(summary(f, dispersion = 1 / k)$cov.scaled))
  ll <- sum(dgamma(ym, shape = k, scale = mu / k, log = TRUE))
  add("mtcars", "Gamma", lk, f, se, ll, k)
}
for (lk in c("identity", "log", "inverse")) {
  f <- refine(try_fit(glm(ym ~ X[, -1], family = gaussian(link = lk), control = ctl)))
  if (is.null(f) || !f$converged) { message("Gaussian ", lk, ": no fit"); next }
  add("mtcars", "Gaussian", lk, f, sqrt(diag(vcov(f))), as.numeric(logLik(f)),
      sqrt(deviance(f) / nrow(X)))
}

# Negative binomial: quine (MASS) and warpbreaks
Xq <- model.matrix(~ Sex + Age + Eth + Lrn, quine)
yq <- quine$Days
write_data("quine", Xq, yq)
for (lk in c("log", "identity", "sqrt")) {
  for (d in c("quine", "warpbreaks")) {
    XX <- if (d == "quine") Xq else model.matrix(~ wool + tension, warpbreaks)
    yy <- if (d == "quine") yq else yw
    f <- try_fit(glm.nb(yy ~ XX[, -1], link = lk, control = glm.control(epsilon = 1e-14, maxit = 100)))
    if (is.null(f) || !f$converged || is.null(f$th.warn) == FALSE) {
      message("NB ", d, " ", lk, ": no fit"); next
    }
    add(d, "NegativeBinomial", lk, f, sqrt(diag(vcov(f))), as.numeric(logLik(f)), 1 / f$theta)
  }
}
out <- do.call(rbind, rows)
write.csv(out, "links_ref.csv", row.names = FALSE)
cat(R.version.string, "MASS", as.character(packageVersion("MASS")), "\n")
print(unique(out[, c("data", "family", "link")]))
