"""Whole-process time to a first small fit, in a fresh interpreter.

Each candidate is a ``python -c`` script that imports its library, draws a
1000 x 5 logistic data set (intercept + 4 covariates) and fits it. The wall time
of the whole subprocess (interpreter start, imports, tracing/compilation, fit)
is measured from outside; the script also reports its own import and fit times.
Runs alternate between candidates; the median is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

_DATA = """
import numpy as np
rng = np.random.default_rng(0)
X = np.column_stack([np.ones(1000), rng.standard_normal((1000, 4))])
eta = X @ np.array([0.3, 0.5, -0.4, 0.2, 0.1])
y = (rng.random(1000) < 1 / (1 + np.exp(-eta))).astype(float)
"""

SCRIPTS = {
    "mlejax": (
        "import mlejax as mj\nmj.enable_x64()",
        "r = mj.fit(X, y, mj.families.Bernoulli()); ll = float(r.loglik)",
    ),
    "statsmodels Logit": (
        "import statsmodels.api as sm",
        "r = sm.Logit(y, X).fit(disp=0); ll = float(r.llf)",
    ),
    "sklearn LogisticRegression": (
        "from sklearn.linear_model import LogisticRegression",
        "r = LogisticRegression(C=np.inf, fit_intercept=False).fit(X, y); ll = 0.0",
    ),
}


def script(imports: str, fit: str) -> str:
    return (
        "import time, json\nt0 = time.perf_counter()\n"
        + imports
        + "\nt1 = time.perf_counter()\n"
        + _DATA
        + "t2 = time.perf_counter()\n"
        + fit
        + "\nt3 = time.perf_counter()\n"
        + "print(json.dumps({'import_s': t1 - t0, 'fit_s': t3 - t2, 'loglik': ll}))\n"
    )


def run(repeats: int = 3, names=None, log=print) -> dict:
    names = list(names or SCRIPTS)
    out = {name: {"wall_s": [], "import_s": [], "fit_s": []} for name in names}
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            src = script(*SCRIPTS[name])
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", src], capture_output=True, text=True, env=env
            )
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                out[name]["error"] = proc.stderr.strip().splitlines()[-1:]
                log(f"    {name}: FAILED {out[name]['error']}")
                continue
            rep = json.loads(proc.stdout.strip().splitlines()[-1])
            out[name]["wall_s"].append(wall)
            out[name]["import_s"].append(rep["import_s"])
            out[name]["fit_s"].append(rep["fit_s"])
            log(f"    [{r + 1}/{repeats}] {name:<28s} {wall:7.2f} s")
    for v in out.values():
        for key in ("wall_s", "import_s", "fit_s"):
            v[f"median_{key}"] = statistics.median(v[key]) if v[key] else None
    return out
