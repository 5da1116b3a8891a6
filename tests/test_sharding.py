"""Row-sharded data over a mesh of 8 virtual CPU devices gives the same fit.

Run in a subprocess: the device count must be fixed before JAX starts.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import mlejax as mj
    assert len(jax.devices()) == 8, jax.devices()
    rng = np.random.default_rng(3)
    n, p = 800, 4
    X = mj.add_constant(rng.normal(size=(n, p - 1)))
    beta = np.array([0.2, 0.8, -0.5, 0.3])
    out = {}
    mesh = Mesh(np.array(jax.devices()), ("rows",))
    rows, rep = NamedSharding(mesh, P("rows", None)), NamedSharding(mesh, P("rows"))
    data = {
        "Bernoulli": (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(float),
        "Poisson": rng.poisson(np.exp(X @ beta)).astype(float),
        "Gaussian": X @ beta + rng.normal(size=n),
    }
    for name, y in data.items():
        fam = getattr(mj.families, name)()
        single = mj.fit(X, y, fam)
        Xs, ys = jax.device_put(X, rows), jax.device_put(y, rep)
        sharded = mj.fit(Xs, ys, fam)
        diff = np.asarray(sharded.params) - np.asarray(single.params)
        out[name] = {
            "max_diff": float(np.max(np.abs(diff))),
            "loglik_diff": float(abs(sharded.loglik - single.loglik)),
            "n_shards": len(Xs.sharding.device_set),
            "converged": bool(sharded.converged),
        }
    print(json.dumps(out))
    """
)


def test_row_sharded_fit_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in out.items():
        assert r["n_shards"] == 8, name
        assert r["converged"], name
        assert r["max_diff"] < 1e-12, (name, r)
        assert r["loglik_diff"] < 1e-9, (name, r)
