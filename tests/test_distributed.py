"""Two processes (``jax.distributed``, CPU collectives over localhost) fit one model.

Each process holds half the rows; the global arrays are built with
``jax.make_array_from_process_local_data`` over a 2-process mesh and handed to
``mj.fit`` as they are. The sharded fit must equal the fit of all rows in one
process (computed by process 0 from NumPy input, the ordinary host path) to
1e-12, standard errors included: a logistic model in the default run, Gaussian
and Poisson models under ``-m slow``.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    pid, port, families = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid,
        initialization_timeout=120, heartbeat_timeout_seconds=60,
        shutdown_timeout_seconds=120,
    )
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import mlejax as mj

    assert jax.process_count() == 2 and len(jax.devices()) == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("rows",))
    rows2, rows1 = NamedSharding(mesh, P("rows", None)), NamedSharding(mesh, P("rows"))
    rng = np.random.default_rng(7)   # the same full data in both processes
    n, p = 600, 4
    X = mj.add_constant(rng.normal(size=(n, p - 1)))
    beta = np.array([0.3, 0.9, -0.6, 0.4])
    data = {
        "Bernoulli": (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(float),
        "Gaussian": X @ beta + rng.normal(size=n),
        "Poisson": rng.poisson(np.exp(X @ beta)).astype(float),
    }
    mine = slice(pid * n // 2, (pid + 1) * n // 2)   # this process's rows
    out = {}
    for name in families:
        y = data[name]
        fam = getattr(mj.families, name)()
        Xg = jax.make_array_from_process_local_data(rows2, X[mine], (n, p))
        yg = jax.make_array_from_process_local_data(rows1, y[mine], (n,))
        assert not Xg.is_fully_addressable
        res = mj.fit(Xg, yg, fam)
        # results are small and replicated: every process can read them
        got = {k: np.asarray(v).tolist() for k, v in
               dict(params=res.params, stderr=res.stderr, loglik=res.loglik,
                    cov=res.cov, converged=res.converged).items()}
        out[name] = {"sharded": got, "n_shards": len(Xg.sharding.device_set)}
        if pid == 0:  # all rows in this process alone (process 1 waits idle)
            one = mj.fit(X, y, fam)
            out[name]["single"] = {k: np.asarray(getattr(one, k)).tolist()
                                   for k in ("params", "stderr", "loglik", "cov")}
    print("RESULT " + json.dumps(out), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_two_processes(families: str) -> list[dict]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(i), str(port), families],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-3000:]
            line = [s for s in stdout.splitlines() if s.startswith("RESULT ")][-1]
            outs.append(json.loads(line[len("RESULT ") :]))
    finally:
        for proc in procs:  # never leave a worker behind (a hung peer, a failure)
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outs


def _check(outs: list[dict]) -> None:
    for name, r in outs[0].items():
        assert r["n_shards"] == 2, name
        assert r["sharded"]["converged"], name
        for k in ("params", "stderr", "loglik", "cov"):
            a, b = np.asarray(r["sharded"][k]), np.asarray(r["single"][k])
            assert np.all(np.abs(a - b) <= 1e-12 * np.maximum(1.0, np.abs(b))), (
                name,
                k,
                a,
                b,
            )
            # both processes hold the same (replicated) result
            c = np.asarray(outs[1][name]["sharded"][k])
            assert np.array_equal(a, c), (name, k)


def test_two_process_logistic_fit_matches_single_process():
    _check(_run_two_processes("Bernoulli"))


@pytest.mark.slow
def test_two_process_gaussian_and_poisson_fits_match_single_process():
    _check(_run_two_processes("Gaussian,Poisson"))
