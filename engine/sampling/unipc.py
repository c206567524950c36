"""UniPC multistep predictor-corrector (Zhao et al. 2023, "UniPC", B(h) variants bh1 / bh2).

Run the way ComfyUI runs it: in variance-preserving space with sigma as the time variable, data
prediction, order min(3, steps - 1), lower order at the end, the last target sigma 0 replaced by 0.001,
and no corrector after the final step. Model evaluations equal the number of steps.
"""

from __future__ import annotations

import torch

from engine.sampling.k_samplers import Denoiser, StepCallback
from engine.sampling.noise import NoiseSampler


def _log_alpha(sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log(1 / ((sigma * sigma) + 1))


def _alpha(sigma: torch.Tensor) -> torch.Tensor:
    return torch.exp(_log_alpha(sigma))


def _std(sigma: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_alpha(sigma)))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    la = _log_alpha(sigma)
    return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))


def _col(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v[(...,) + (None,) * (ndim - 1)]


def _mix(coeffs: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    spec = "k,bkchw->bchw" if stacked.ndim == 5 else "k,bk...->b..."
    return torch.einsum(spec, coeffs, stacked)


class _UniPC:
    def __init__(self, model: Denoiser, variant: str) -> None:
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"uni_pc: variant must be 'bh1' or 'bh2', got {variant!r}")
        self.model = model
        self.variant = variant

    def data_pred(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 from the VP-space x: the denoiser sees x * sqrt(sigma^2 + 1) and is turned into eps first."""
        sigma = t.view(t.shape[:1] + (1,) * (x.ndim - 1))
        x_ve = x * ((sigma**2 + 1.0) ** 0.5)
        eps = (x_ve - self.model(x_ve, t)) / sigma
        return (x - _col(_std(t), x.ndim) * eps) / _col(_alpha(t), x.ndim)

    def update(
        self, x: torch.Tensor, models: list[torch.Tensor], times: list[torch.Tensor], t: torch.Tensor,
        order: int, use_corrector: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        nd = x.ndim
        t_prev_0 = times[-1]
        lam_prev_0 = _lambda(t_prev_0)
        lam_t = _lambda(t)
        model_prev_0 = models[-1]
        sigma_prev_0, sigma_t = _std(t_prev_0), _std(t)
        alpha_t = torch.exp(_log_alpha(t))
        h = lam_t - lam_prev_0

        rks: list[torch.Tensor | float] = []
        d1s: list[torch.Tensor] = []
        for i in range(1, order):
            rk = ((_lambda(times[-(i + 1)]) - lam_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((models[-(i + 1)] - model_prev_0) / rk)
        rks.append(1.0)
        rk_t = torch.tensor([float(r) for r in rks], device=x.device)

        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        rows: list[torch.Tensor] = []
        bs: list[float] = []
        for i in range(1, order + 1):
            rows.append(torch.pow(rk_t, i - 1))
            bs.append(float(h_phi_k * factorial / b_h))
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_mat = torch.stack(rows)
        b_vec = torch.tensor(bs, device=x.device)

        stacked: torch.Tensor | None = None
        rhos_p: torch.Tensor | None = None
        if d1s:
            stacked = torch.stack(d1s, dim=1)
            if order == 2:
                rhos_p = torch.tensor([0.5], device=x.device)
            else:
                rhos_p = torch.linalg.solve(r_mat[:-1, :-1], b_vec[:-1])
        rhos_c: torch.Tensor | None = None
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_mat, b_vec)

        x_t_ = _col(sigma_t / sigma_prev_0, nd) * x - _col(alpha_t * h_phi_1, nd) * model_prev_0
        pred_res: torch.Tensor | float = _mix(rhos_p, stacked) if stacked is not None and rhos_p is not None else 0
        x_t = x_t_ - _col(alpha_t * b_h, nd) * pred_res
        model_t: torch.Tensor | None = None
        if rhos_c is not None:
            model_t = self.data_pred(x_t, t)
            corr_res: torch.Tensor | float = _mix(rhos_c[:-1], stacked) if stacked is not None else 0
            d1_t = model_t - model_prev_0
            x_t = x_t_ - _col(alpha_t * b_h, nd) * (corr_res + rhos_c[-1] * d1_t)
        return x_t, model_t


@torch.no_grad()
def _sample_unipc(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: StepCallback | None, variant: str
) -> torch.Tensor:
    timesteps = sigmas.clone()
    if timesteps[-1] == 0:
        timesteps[-1] = 0.001
    steps = len(timesteps) - 1
    order = min(3, len(timesteps) - 2)
    if steps < 1 or order < 1:
        raise ValueError(f"uni_pc needs at least 2 steps, got a schedule of {len(sigmas)} sigmas")
    solver = _UniPC(model, variant)
    batch = x.shape[0]
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)
    models: list[torch.Tensor] = []
    times: list[torch.Tensor] = []
    for step_index in range(steps):
        if step_index == 0:
            vec_t = timesteps[0].expand((batch,))
            models = [solver.data_pred(x, vec_t)]
            times = [vec_t]
        elif step_index < order:
            vec_t = timesteps[step_index].expand(batch)
            x, model_x = solver.update(x, models, times, vec_t, step_index, use_corrector=True)
            if model_x is None:
                model_x = solver.data_pred(x, vec_t)
            models.append(model_x)
            times.append(vec_t)
        else:
            last = step_index + (2 if step_index == steps - 1 else 1)
            for step in range(step_index, last):
                vec_t = timesteps[step].expand(batch)
                step_order = min(order, steps + 1 - step)
                x, model_x = solver.update(x, models, times, vec_t, step_order, use_corrector=step != steps)
                for i in range(order - 1):
                    times[i] = times[i + 1]
                    models[i] = models[i + 1]
                times[-1] = vec_t
                if step < steps:
                    if model_x is None:
                        model_x = solver.data_pred(x, vec_t)
                    models[-1] = model_x
        if callback is not None:
            callback(step_index, models[-1], x)
    return x / _alpha(timesteps[-1])


def sample_uni_pc(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """UniPC with B(h) = h (bh1), UniC corrector after every step but the last (Zhao et al. 2023)."""
    return _sample_unipc(model, x, sigmas, callback, "bh1")


def sample_uni_pc_bh2(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """UniPC with B(h) = e^h - 1 (bh2), recommended for guided sampling (Zhao et al. 2023)."""
    return _sample_unipc(model, x, sigmas, callback, "bh2")
