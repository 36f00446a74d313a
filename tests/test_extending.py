"""README's "Extending lazyhasty" runs as written, and its custom stepper and probe give what a float64 loop
written by hand gives (a single run and every member of an ensemble)."""

import re
from pathlib import Path

import torch
from torch.func import functional_call, grad

import lazyhasty as lh

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> dict:
    text = README.read_text()
    section = text[text.index("### Extending lazyhasty"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md (Extending lazyhasty)", "exec"), scope)
    return scope


def by_hand(net, data, alpha, lr, steps):
    """theta <- theta - lr sign(d/dtheta BCE(alpha (f - f0)) / alpha^2), from the network's own parameters."""
    theta = {k: v.detach().clone() for k, v in net.named_parameters()}
    f0 = functional_call(net, theta, (data.x,)).detach()

    def objective(p):
        f = f0 + alpha * (functional_call(net, p, (data.x,)) - f0)
        return torch.nn.functional.softplus(-data.y * f.squeeze(-1)).mean() / alpha**2

    for _ in range(steps):
        g = grad(objective)(theta)
        theta = {k: v - lr * g[k].sign() for k, v in theta.items()}
    return theta, (f0 + alpha * (functional_call(net, theta, (data.x,)) - f0))


def test_the_readme_example_runs_and_its_probe_records_rows():
    scope = readme_example()
    rows = scope["result"].metrics.query("metric == 'output_rms'")
    assert scope["result"].steps == 200 and set(rows.split) == {"train"} and len(rows) > 10
    assert (rows.value > 0).all() and rows.value.iloc[-1] != rows.value.iloc[0]


def test_the_custom_stepper_and_probe_match_a_loop_by_hand_in_float64():
    scope = readme_example()
    SignGD, output_rms = scope["SignGD"], scope["output_rms"]
    data = lh.data.yinyang(40, seed=1, dtype=torch.float64)
    nets = [lh.seeded(lambda: lh.MLP([2, 16, 1]).double(), seed=s) for s in (0, 1)]
    alphas, lr, steps = (1.0, 10.0), 1e-3, 30
    expected = [by_hand(lh.same_init(net), data, a, lr, steps) for net, a in zip(nets, alphas)]
    one = lh.AlphaScaled(lh.same_init(nets[0]), alphas[0])
    single = lh.train(one, data, loss="bce", stepper=SignGD(lr),
                      stop=lh.Stop(max_steps=steps), probes=(output_rms,))
    ens = lh.Ensemble([lh.AlphaScaled(lh.same_init(n), a) for n, a in zip(nets, alphas)])
    members = lh.train(ens, data, loss="bce", stepper=SignGD(lr), stop=lh.Stop(max_steps=steps),
                       probes=(output_rms,))
    for k, (result, (theta, out)) in enumerate(zip([single, *members], [expected[0], *expected])):
        module = ens.member(k - 1) if k else one
        for name, p in module.model.named_parameters():
            torch.testing.assert_close(p.detach(), theta[name], rtol=0, atol=1e-12)
        last = result.metrics.query("metric == 'output_rms' and step == @steps").value.item()
        assert abs(last - float(out.pow(2).mean().sqrt())) < 1e-12
        assert result.steps == steps and abs(result.t - steps * lr) < 1e-15
