# Reference numbers for tests/test_inference_reference.py: likelihood-ratio
# tests (anova(..., test = "Chisq"), MASS's anova.negbin) and predictions with
# standard errors (predict(..., se.fit = TRUE), type "link" and "response").
#
# Run from this folder:  Rscript anova_predict.R
# Writes: anova_predict_data.csv (the simulated data set, all models use it),
#         anova_predict_lr.csv   (one row per nested comparison),
#         anova_predict_pred.csv (one row per model x new row).
suppressMessages(library(MASS))
set.seed(20261127)
n <- 150
x1 <- rnorm(n); x2 <- rnorm(n); x3 <- runif(n, -1, 1)
expo <- runif(n, 0.5, 2)
yb <- rbinom(n, 1, plogis(0.2 + 0.9 * x1 - 0.4 * x2 + 0.3 * x3))
yp <- rpois(n, expo * exp(0.3 + 0.5 * x1 + 0.2 * x2 - 0.1 * x3))
ynb <- rnbinom(n, size = 2.5, mu = exp(0.8 + 0.4 * x1 - 0.3 * x2 + 0.2 * x3))
yg <- rgamma(n, shape = 3, rate = 3 / exp(0.5 + 0.3 * x1 - 0.2 * x2 + 0.1 * x3))
yo <- 1 + 2 * x1 - x2 + 0.5 * x3 + rnorm(n, sd = 1.5)
d <- data.frame(x1, x2, x3, expo, yb, yp, ynb, yg, yo)
write.csv(format(d, digits = 17), "anova_predict_data.csv", row.names = FALSE, quote = FALSE)
d <- read.csv("anova_predict_data.csv")  # the numbers exactly as stored

ctl <- glm.control(epsilon = 1e-14, maxit = 100)
lr <- list()
add_lr <- function(model, small, big) {
  a <- anova(small, big, test = "Chisq")
  lr[[length(lr) + 1]] <<- data.frame(
    model = model, df = a$Df[2], deviance = a$Deviance[2], pvalue = a[2, "Pr(>Chi)"],
    resid_dev_small = a[1, "Resid. Dev"], resid_dev_big = a[2, "Resid. Dev"],
    loglik_small = as.numeric(logLik(small)), loglik_big = as.numeric(logLik(big))
  )
}
# known dispersion: the deviance difference is 2 (l_big - l_small)
pb1 <- glm(yb ~ x1, binomial, d, control = ctl)
pb3 <- glm(yb ~ x1 + x2 + x3, binomial, d, control = ctl)
add_lr("bernoulli", pb1, pb3)
pp1 <- glm(yp ~ x1 + offset(log(expo)), poisson, d, control = ctl)
pp3 <- glm(yp ~ x1 + x2 + x3 + offset(log(expo)), poisson, d, control = ctl)
add_lr("poisson", pp1, pp3)
# Gamma (log link): anova divides the deviance difference by the *Pearson*
# dispersion of the larger model (not an LR test with the shape re-estimated)
pg1 <- glm(yg ~ x1, Gamma(link = "log"), d, control = ctl)
pg3 <- glm(yg ~ x1 + x2 + x3, Gamma(link = "log"), d, control = ctl)
a <- anova(pg1, pg3, test = "Chisq")
lr[[length(lr) + 1]] <- data.frame(
  model = "gamma", df = a$Df[2], deviance = a$Deviance[2], pvalue = a[2, "Pr(>Chi)"],
  resid_dev_small = a[1, "Resid. Dev"], resid_dev_big = a[2, "Resid. Dev"],
  loglik_small = NA, loglik_big = NA
)
lr[[length(lr)]]$pearson_dispersion_big <- summary(pg3)$dispersion
# negative binomial: MASS's anova.negbin is the LR test with theta
# re-estimated in each model (the same as mj.lr_test)
nb1 <- glm.nb(ynb ~ x1, d, control = ctl)
nb3 <- glm.nb(ynb ~ x1 + x2 + x3, d, control = ctl)
a <- anova(nb1, nb3)
lr[[length(lr) + 1]] <- data.frame(
  model = "negbin", df = a[2, "   df"], deviance = a[2, "LR stat."],
  pvalue = a[2, "Pr(Chi)"], resid_dev_small = NA, resid_dev_big = NA,
  loglik_small = as.numeric(logLik(nb1)), loglik_big = as.numeric(logLik(nb3))
)
lr <- do.call(rbind, lapply(lr, function(r) {
  if (is.null(r$pearson_dispersion_big)) r$pearson_dispersion_big <- NA
  r
}))
write.csv(format(lr, digits = 17), "anova_predict_lr.csv", row.names = FALSE, quote = FALSE)

# predictions at the first 8 rows, changed, with their own exposure
nd <- data.frame(x1 = d$x1[1:8] + 0.5, x2 = -d$x2[1:8], x3 = d$x3[1:8] / 2,
                 expo = seq(0.5, 2.25, by = 0.25))
pred <- list()
for (nm in c("bernoulli", "poisson", "gaussian")) {
  m <- switch(nm, bernoulli = pb3, poisson = pp3,
              gaussian = glm(yo ~ x1 + x2 + x3, gaussian, d, control = ctl))
  pl <- predict(m, nd, type = "link", se.fit = TRUE)
  pr <- predict(m, nd, type = "response", se.fit = TRUE)
  pred[[nm]] <- data.frame(model = nm, row = 1:8, x1 = nd$x1, x2 = nd$x2, x3 = nd$x3,
                           expo = nd$expo, link = pl$fit, link_se = pl$se.fit,
                           response = pr$fit, response_se = pr$se.fit)
}
pred <- do.call(rbind, pred)
write.csv(format(pred, digits = 17), "anova_predict_pred.csv", row.names = FALSE, quote = FALSE)
