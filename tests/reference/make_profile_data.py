"""Data for the profile-likelihood reference (run once; R reads the CSVs).

python tests/reference/make_profile_data.py && Rscript tests/reference/profile_ci.R
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261127)

n = 60
x1 = rng.normal(size=n)
x2 = rng.uniform(-1, 1, size=n)
eta = -0.3 + 0.8 * x1 - 1.1 * x2
y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
with open(os.path.join(HERE, "profile_bernoulli.csv"), "w") as f:
    f.write("y,x1,x2\n")
    for row in zip(y, x1, x2, strict=True):
        f.write(f"{int(row[0])},{float(row[1])!r},{float(row[2])!r}\n")

n = 50
x1 = rng.normal(size=n)
x2 = rng.binomial(1, 0.4, size=n).astype(float)
expo = rng.uniform(0.5, 3.0, size=n)
mu = expo * np.exp(0.4 + 0.3 * x1 - 0.5 * x2)
y = rng.poisson(mu)
with open(os.path.join(HERE, "profile_poisson.csv"), "w") as f:
    f.write("y,x1,x2,exposure\n")
    for row in zip(y, x1, x2, expo, strict=True):
        f.write(
            f"{int(row[0])},{float(row[1])!r},{float(row[2])!r},{float(row[3])!r}\n"
        )
