"""The Energy-Based Transformer for text (recipe sections 3-5).

An EBT scores a candidate next-token distribution p (B, S, V) given the context with a
scalar energy per position, and *predicts* by gradient descent on that energy:

    y_0 ~ N(0, init_std)                                     logits, (B, S, V)
    y_{k+1} = softmax(y_k + noise) - alpha * dE/dp           (the step is on p)

Two streams share every block's weights:
  * the observed stream: the real tokens, plain causal attention. It never sees a
    prediction, so it does not depend on p: its per-layer keys and values are computed
    once per forward and reused by every thinking step (unless the S1 step token,
    which the context also sees, changes per step).
  * the predicted stream: p embedded by a bias-free Linear(V -> D). The prediction at
    position i sits at RoPE position i+1 (the token it predicts) and attends to the
    observed keys 0..i plus its own key, never to other predictions: one
    S x (S + 1) attention, the same cost as the causal one.
The energy head (final RMSNorm, Linear(D -> 1)) reads the predicted stream only.
Positions are independent, so d(E.sum())/dp gives every position's gradient at once.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, resolve_alpha
from .layers import Block, RMSNorm, init_weights, rope_tables
from .transformer_pp import part_share


def softmax32(x, dim=-1):
    """Softmax in at least fp32 (bf16/fp16 are upcast; fp64 stays fp64 for gradcheck)."""
    return torch.softmax(x, dim=dim, dtype=torch.promote_types(x.dtype, torch.float32)).to(x.dtype)


def _draw(fn, shape, device, rows):
    """fn(*shape) (torch.randn or torch.rand), or only rows[0] of it when rows=(index, n):
    the whole batch is drawn from the generator and the part's rows kept."""
    x = fn(*shape, device=device)
    return x if rows is None or (len(rows[0]) == shape[0]) else x[rows[0]]


class ThinkingDiverged(RuntimeError):
    """NaN or Inf in the thinking gradient."""


class EBT(nn.Module):
    # the replay buffer's logits: bf16 halves it (192 x S x V: 5 GB instead of 10 at the
    # paper's V and S); note its spacing is 1/16 at |logit| 8-16
    replay_dtype = torch.bfloat16

    def __init__(self, cfg: Config):
        super().__init__()
        m, e = cfg.model, cfg.ebt
        self.cfg, self.e = cfg, e
        self.vocab_size = m.vocab_size
        self.tok_embeddings = nn.Embedding(m.vocab_size, m.d_model)
        self.prob_embed = nn.Linear(m.vocab_size, m.d_model, bias=False)
        self.step_embeddings = nn.Embedding(e.step_tokens, m.d_model) if e.step_tokens else None
        self.per_step_context = e.per_step_context
        self.layers = nn.ModuleList(
            Block(m.d_model, m.n_heads, m.d_ffn, m.norm_eps) for _ in range(m.n_layers))
        self.norm = RMSNorm(m.d_model, m.norm_eps)
        self.energy_head = nn.Linear(m.d_model, 1, bias=False)
        init_weights(self, m.init_gain, m.embed_init)
        alpha0 = resolve_alpha(e, m.vocab_size)
        self.alpha = nn.Parameter(torch.tensor(float(alpha0)), requires_grad=e.alpha_learnable)
        self.alpha_lr_mult = e.alpha_lr_mult or 3.0 * alpha0
        self.head_dim = m.d_model // m.n_heads
        self._replay: dict[str, torch.Tensor] | None = None
        self._replay_start = 0          # the ring's row of the oldest entry (_replay_push)
        self._pending: list[tuple] = []       # this step's fresh rows, pushed at after_step

    # ------------------------------------------------------------------ streams
    def _rope(self, start: int, length: int, device):
        pos = torch.arange(start, start + length, device=device)
        return rope_tables(pos, self.head_dim, self.cfg.model.rope_theta)

    def context(self, tokens, step: int | None = None):
        """Observed stream over tokens (B, S) -> per-layer (k, v), each (B, H, S_o, K),
        where S_o = S (+1 with a step token in front: S1's token of this step, S2's single one)."""
        x = self.tok_embeddings(tokens)                                   # (B, S, D)
        if self.step_embeddings is not None:
            idx = min(step or 0, self.step_embeddings.num_embeddings - 1)
            s = self.step_embeddings.weight[idx].expand(x.shape[0], 1, -1)
            x = torch.cat([s, x], dim=1)                                  # (B, 1+S, D)
        cos, sin = self._rope(0, x.shape[1], x.device)
        kvs = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            q, k, v = layer.attention.heads(layer.attention_norm(x), cos, sin)
            kvs.append((k, v))
            if i == last:      # the context's own output after the last layer is never read
                break
            x = x + layer.attention.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))
            x = layer.mlp_residual(x)
        return kvs

    def energy(self, kvs, p):
        """Energies (B, S) of candidate distributions p (B, S, V) given the context."""
        B, S, _ = p.shape
        prefix = kvs[0][0].shape[2] - S                   # 1 with a step token, else 0
        # the residual stream stays in p's precision (fp32) under autocast, as the
        # token embedding keeps it for Transformer++: only the matmuls run in bf16
        x = self.prob_embed(p).to(p.dtype)                # (B, S, D)
        cos, sin = self._rope(prefix + 1, S, p.device)    # prediction i sits where token i+1 is
        # prediction i may see observed keys 0..i (shifted by the prefix)
        seen = torch.ones(S, S + prefix, dtype=torch.bool, device=p.device).tril(diagonal=prefix)
        # an additive -inf bias rather than masked_fill: the same scores, and its backward
        # (and the thinking step's double backward) is the identity instead of a masked copy
        bias = torch.zeros(S, S + prefix, dtype=p.dtype, device=p.device).masked_fill(~seen, float("-inf"))
        scale = 1.0 / math.sqrt(self.head_dim)
        for layer, (k_obs, v_obs) in zip(self.layers, kvs):
            q, k, v = layer.attention.heads(layer.attention_norm(x), cos, sin)    # (B, H, S, K)
            s_obs = (q @ k_obs.transpose(-1, -2)) * scale                        # (B, H, S, S_o)
            s_obs = s_obs + bias
            s_self = (q * k).sum(-1, keepdim=True) * scale                       # (B, H, S, 1)
            a = softmax32(torch.cat([s_obs, s_self], dim=-1))
            y = a[..., :-1] @ v_obs + a[..., -1:] * v                            # (B, H, S, K)
            x = x + layer.attention.merge(y)
            x = layer.mlp_residual(x)
        h = self.norm(x)
        with torch.autocast(h.device.type, enabled=False):   # the energy (D MACs/token) in fp32
            return self.energy_head(h).squeeze(-1)                               # (B, S)

    # ------------------------------------------------------------------ thinking
    def step_size(self, shape, randomize: bool, rows=None):
        """alpha clamped at alpha_min; randomised U[alpha/s, alpha*s] per (batch, position)."""
        alpha = self.alpha.clamp(min=self.e.alpha_min)
        s = self.e.alpha_random_scale
        if randomize and s != 1.0:
            u = _draw(torch.rand, (shape[0], shape[1], 1), alpha.device, rows)
            alpha = alpha / s + u * (alpha * s - alpha / s)
        return alpha

    def think(self, tokens, steps: int, *, y0=None, learning: bool = False, randomize: bool = True,
              noise: bool = True, final_energy: bool = False, rows=None):
        """Run `steps` optimisation steps from y0 (random if None).

        learning=True builds the graphs the parameter gradient needs: the last step only
        (second_order="truncated") or every step ("full"). Returns (logits after each
        step [K x (B, S, V)], mean energy of each step's input, noise included [K], plus
        the noise-free energy of the final prediction when final_energy=True).
        rows=(index, n): `tokens` are rows `index` of a batch of n (a micro-batch or a
        rank's share); the noise is drawn for all n rows and these rows kept, so that
        any split of a batch thinks exactly as the whole batch does.
        No gradient reaches y0 or the thinking leaves: dE/dp is taken with
        torch.autograd.grad, and the trainer's backward names the parameters as its
        inputs (train.loop.backward), so no (B, S, V) .grad is ever made.
        """
        e = self.e
        B, S = tokens.shape
        y = torch.randn(B, S, self.vocab_size, device=tokens.device) * e.init_std if y0 is None else y0
        alpha = self.step_size((B, S) if rows is None else (rows[1], S), randomize, rows)
        context = self.context if learning else torch.no_grad()(self.context)
        shared = None if self.per_step_context else context(tokens)
        logits, energies = [], []
        with torch.enable_grad():
            for k in range(steps):
                kvs = shared if shared is not None else context(tokens, step=k)
                keep = learning and (e.second_order == "full" or k == steps - 1)
                if e.detach_between_steps or not learning:
                    y = y.detach()
                if not y.requires_grad:
                    y = y.requires_grad_()       # y stays the leaf; p below is not (FlopCounterMode)
                if noise and e.langevin_std > 0:
                    y = y + (torch.randn_like(y) if rows is None else
                             _draw(torch.randn, (rows[1], S, self.vocab_size), y.device, rows)) * e.langevin_std
                p = softmax32(y)
                E = self.energy(kvs, p)                                      # (B, S)
                (g,) = torch.autograd.grad(E.sum(), p, create_graph=keep)
                # a finite sum means a finite g (NaN/Inf propagate): one pass over the (B, S, V)
                # tensor; only a sum that overflowed needs the element-wise check
                if not torch.isfinite(g.sum()) and not torch.isfinite(g).all():
                    raise ThinkingDiverged(f"NaN/Inf in dE/dp at thinking step {k + 1}")
                if e.grad_clamp > 0:
                    lim = e.grad_clamp / self.alpha.detach().clamp(min=e.alpha_min)
                    g = g.clamp(-lim, lim)
                y = p - alpha * g
                logits.append(y)
                energies.append(E.detach().mean())
        if final_energy:
            energies.append(self.energy_map(tokens, y, step=steps, kvs=shared).mean())
        return logits, energies

    # ------------------------------------------------------------------ losses
    def train_steps(self) -> int:
        """S2 draws the step count per batch in [steps, steps + random_extra_steps]."""
        extra = self.e.random_extra_steps
        return self.e.steps + (int(torch.randint(0, extra + 1, (1,))) if extra else 0)

    def loss(self, inputs, targets, rows=None, **_):
        """The training loss. rows=(lo, n, scored): `inputs` are fresh rows lo.. of a batch
        of n scoring `scored` targets (a micro-batch, or a rank's share); every random
        draw is made for the whole batch and this part's rows kept, and the loss returned
        is this part's share of the whole batch's mean (the shares sum to it). The fresh rows' final logits join
        the replay buffer at `after_step`, once every part of the step has run."""
        e = self.e
        steps = self.train_steps()
        fresh = inputs.shape[0]
        inputs_all, targets_all, y0, part = self._with_replay(inputs, targets, rows)
        logits, energies = self.think(inputs_all, steps, y0=y0, learning=True, randomize=True, noise=True,
                                      rows=part)
        scored = logits[-1:] if e.loss == "final" else logits      # S2 scores its last step only
        loss = torch.stack([F.cross_entropy(y.float().flatten(0, 1), targets_all.flatten()) for y in scored]).mean()
        info = self._info(steps, energies)
        if part is not None:
            info["_share"] = inputs_all.shape[0] / part[1]     # of the rows (fresh + replayed), for the metrics
            loss = part_share(loss, logits[-1], targets_all, part[2])
        if e.replay_buffer:
            self._pending.append((inputs, targets, logits[-1][:fresh].detach().to(self.replay_dtype)))
        return loss, info

    def eval_loss(self, inputs, targets):
        steps = self.e.default_eval_steps
        logits, energies = self.think(inputs, steps, learning=False, randomize=False, noise=True)
        loss = F.cross_entropy(logits[-1].detach().float().flatten(0, 1), targets.flatten())
        return loss, self._info(steps, energies)

    def _info(self, steps, energies):
        return {"ebt_steps": float(steps), "ebt_alpha": float(self.alpha.detach().clamp(min=self.e.alpha_min)),
                "energy_first": float(energies[0]), "energy_last": float(energies[-1])}

    def after_step(self, gather=None):
        """After the optimiser step: clamp alpha, and push the step's fresh rows (all
        parts, in batch order; `gather` concatenates the ranks' rows in rank order)
        into the replay buffer."""
        with torch.no_grad():
            self.alpha.clamp_(min=self.e.alpha_min)
        if self._pending:
            new = [torch.cat(t) for t in zip(*self._pending)]
            self._pending = []
            if gather is not None:
                new = [gather(t) for t in new]
            self._replay_push(*new)

    # ------------------------------------------------------------------ replay buffer
    def _with_replay(self, inputs, targets, rows=None):
        """With a replay buffer, int(B * replay_fraction) stored sequences are appended to
        the fresh batch and resume from their stored final logits (as the reference code
        does: the fresh data is kept whole, so a point still trains on exactly its token
        budget; the replayed rows are extra compute, counted in flops.py).

        rows=(lo, n, scored): the fresh rows are lo..hi of a batch of n that scores
        `scored` targets. The whole batch's draws are made (y0 for n rows, the replay
        pick for int(n * fraction) rows) and this part keeps its fresh rows and replayed
        rows lo*r//n .. hi*r//n, so the parts of a batch tile it exactly. Returns (inputs,
        targets, y0, part): part is (index into the whole batch [fresh n; replayed r],
        n + r, targets the whole batch scores, replayed ones included), None without rows."""
        e = self.e
        b, S = inputs.shape
        lo, n = rows[:2] if rows is not None else (0, b)
        hi = lo + b
        y0 = _draw(torch.randn, (n, S, self.vocab_size), inputs.device, None if rows is None else
                   (torch.arange(lo, hi, device=inputs.device), n)) * e.init_std
        n_rep = 0
        if e.replay_buffer and self._replay is not None:
            n_rep = min(int(n * e.replay_fraction), self._replay["inputs"].shape[0])
        part = None if rows is None else (torch.arange(lo, hi, device=inputs.device), n, rows[2])
        if n_rep == 0:
            return inputs, targets, y0, part
        held = self._replay["inputs"].shape[0]
        idx = torch.randperm(held, device=inputs.device)[:n_rep]       # FIFO positions, oldest 0
        idx = (idx + self._replay_start) % held                         # -> rows of the ring
        if rows is not None:
            r0, r1 = lo * n_rep // n, hi * n_rep // n
            scored = rows[2] + int((self._replay["targets"][idx] >= 0).sum())
            idx = idx[r0:r1]
            part = (torch.cat([part[0], n + torch.arange(r0, r1, device=inputs.device)]), n + n_rep, scored)
        return (torch.cat([inputs, self._replay["inputs"][idx]]), torch.cat([targets, self._replay["targets"][idx]]),
                torch.cat([y0, self._replay["logits"][idx].to(y0.dtype)]), part)

    def _replay_push(self, inputs, targets, logits):
        """FIFO of the newest replay_buffer rows. While it fills, rows are appended (FIFO
        position = row); once full it is a ring: the m new rows overwrite the m oldest in
        place and _replay_start (the row of FIFO position 0) moves past them, so a step
        copies m rows, not the whole (cap, S, V) buffer."""
        cap = self.e.replay_buffer
        new = {"inputs": inputs[-cap:], "targets": targets[-cap:], "logits": logits[-cap:].to(self.replay_dtype)}
        old = self._replay
        if old is None or old["inputs"].shape[0] < cap:
            self._replay = new if old is None else {k: torch.cat([old[k], v])[-cap:] for k, v in new.items()}
            self._replay_start = 0
            return
        m = new["inputs"].shape[0]
        ring = (torch.arange(m, device=new["inputs"].device) + self._replay_start) % cap
        for k, v in new.items():
            old[k][ring] = v
        self._replay_start = (self._replay_start + m) % cap

    def extra_state(self) -> dict:
        return {"replay": self._replay, "replay_start": self._replay_start}

    def load_extra_state(self, extra: dict) -> None:
        self._replay = extra.get("replay")
        self._replay_start = int(extra.get("replay_start", 0))

    @torch.no_grad()
    def energy_map(self, tokens, logits, step: int, kvs=None):
        """Per-position energies (B, S) of softmax(logits): the verifier's score. `kvs`
        reuses a context already computed (not for S1, whose context depends on step)."""
        if kvs is None or self.per_step_context:
            kvs = self.context(tokens, step=step)
        return self.energy(kvs, softmax32(logits.detach()))
