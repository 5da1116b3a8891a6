# Reference profile-likelihood intervals for tests/test_profile.py.
#   python tests/reference/make_profile_data.py && Rscript tests/reference/profile_ci.R
# Each endpoint is solved exactly: uniroot on the signed root of the LR
# statistic, each evaluation a glm refit with the coefficient fixed through an
# offset (what MASS's profile does at its grid points, without the spline).
# MASS's confint (profile + spline) is stored too, for comparison only.
suppressMessages(library(MASS))
here <- dirname(normalizePath(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
exact_ci <- function(fit, fam, X, y, off, level = 0.95) {
  z <- qnorm(1 - (1 - level) / 2)
  bh <- coef(fit); se <- sqrt(diag(vcov(fit))); ll <- as.numeric(logLik(fit))
  out <- matrix(NA, length(bh), 2)
  for (j in seq_along(bh)) {
    r <- function(bb) {
      f <- glm.fit(X[, -j, drop = FALSE], y, family = fam, offset = off + bb * X[, j],
                   control = glm.control(epsilon = 1e-14, maxit = 100))
      one <- rep(1, length(y))
      lp <- -fam$aic(y, one, f$fitted.values, one, f$deviance) / 2
      sign(bb - bh[j]) * sqrt(max(0, 2 * (ll - lp)))
    }
    for (s in c(-1, 1)) {
      u <- uniroot(function(bb) r(bb) - s * z, sort(c(bh[j], bh[j] + s * 3 * z * se[j])),
                   extendInt = "upX", tol = 1e-13, maxiter = 200)
      out[j, (s + 3) / 2] <- u$root
    }
  }
  out
}
write_ref <- function(name, fit, fam, X, y, off) {
  fit <- update(fit, control = glm.control(epsilon = 1e-14, maxit = 100))
  ex <- exact_ci(fit, fam, X, y, off)
  ms <- suppressMessages(confint(fit))
  d <- data.frame(term = names(coef(fit)), estimate = sprintf("%.17g", coef(fit)),
                  lower = sprintf("%.17g", ex[, 1]), upper = sprintf("%.17g", ex[, 2]),
                  mass_lower = sprintf("%.17g", ms[, 1]), mass_upper = sprintf("%.17g", ms[, 2]),
                  loglik = sprintf("%.17g", as.numeric(logLik(fit))))
  write.csv(d, file.path(here, name), row.names = FALSE, quote = FALSE)
}
b <- read.csv(file.path(here, "profile_bernoulli.csv"))
Xb <- cbind(1, b$x1, b$x2)
fb <- glm(y ~ x1 + x2, family = binomial, data = b)
write_ref("profile_ci_bernoulli_ref.csv", fb, binomial(), Xb, b$y, rep(0, nrow(b)))
p <- read.csv(file.path(here, "profile_poisson.csv"))
Xp <- cbind(1, p$x1, p$x2)
fp <- glm(y ~ x1 + x2 + offset(log(exposure)), family = poisson, data = p)
write_ref("profile_ci_poisson_ref.csv", fp, poisson(), Xp, p$y, log(p$exposure))
cat(R.version.string, "MASS", as.character(packageVersion("MASS")), "\n")
