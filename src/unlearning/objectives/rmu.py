"""RMU (Li et al. 2024, WMDP): steer layer-L activations on forget data to a random vector.

Which activations: the *output of decoder layer L* (the residual stream after that layer),
captured with a forward hook on ``model.model.layers[L]``, as the original RMU code does. With
``output_hidden_states=True`` in transformers this equals ``hidden_states[L + 1]`` for every layer
but the last (whose ``hidden_states[-1]`` has the final RMSNorm applied); the hook avoids that
pitfall and lets the forward pass stop at layer L.
"""

from __future__ import annotations

import torch

from .base import Objective


class _Stop(Exception):
    pass


def decoder_layers(model):
    """The decoder layer list of a HF causal LM (Llama-style ``model.model.layers``)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"RMU: cannot find decoder layers on {type(model).__name__} (expected model.model.layers)")
    return layers


def layer_output(model, batch, layer: int) -> torch.Tensor:
    """Output hidden states ``[B, T, H]`` of decoder layer ``layer``; later layers are not run."""
    layers = decoder_layers(model)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    handle = layers[layer].register_forward_hook(hook)
    try:
        model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["h"]


def masked_mse(h: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden dimension and the non-padding positions only."""
    mask = attention_mask.to(torch.float32).unsqueeze(-1)
    sq = (h.float() - target.float()).pow(2) * mask
    return sq.sum() / (mask.sum() * h.size(-1)).clamp_min(1)


class RMU(Objective):
    """loss = MSE(h_L(forget), c u) + alpha MSE(h_L(retain), h_L^ref(retain)).

    ``u``: uniform [0, 1)^H, normalised to unit length, drawn from ``seed``; ``c`` =
    ``steering_coeff``. Only ``mlp.down_proj`` of ``layers`` (alias ``trainable_layers``; default L-2..L) is
    trained: ``parameters(model)`` returns those, ``configure(model)`` also freezes the rest.
    Defaults layer 7, steering_coeff 20, alpha 100 are the original RMU's (REFERENCE.md);
    ``seed`` 0 and ``module`` are ours.
    """

    name = "rmu"
    needs_ref = True
    defaults = {"layer": 7, "steering_coeff": 20.0, "alpha": 100.0, "layers": None,
                "seed": 0, "module": "mlp.down_proj"}
    aliases = {"trainable_layers": "layers"}

    def __init__(self, **params):
        super().__init__(**params)
        layer = int(self.params["layer"])
        if layer < 0:
            raise ValueError(f"objective 'rmu': 'layer' must be >= 0, got {layer}")
        if self.params["layers"] is None:
            self.params["layers"] = [i for i in range(layer - 2, layer + 1) if i >= 0]
        self._u: dict[tuple, torch.Tensor] = {}

    def _check_layers(self, model) -> None:
        n = len(decoder_layers(model))
        bad = [i for i in [self.params["layer"], *self.params["layers"]] if not 0 <= i < n]
        if bad:
            raise ValueError(f"objective 'rmu': layer index(es) {bad} out of range for a {n}-layer model")

    def control_vector(self, hidden_size: int, device, dtype=torch.float32) -> torch.Tensor:
        """c * u, u a seeded uniform random unit vector of length ``hidden_size``."""
        key = (hidden_size, str(device), dtype)
        if key not in self._u:
            gen = torch.Generator().manual_seed(int(self.params["seed"]))
            u = torch.rand(hidden_size, generator=gen, dtype=torch.float32)
            u = u / u.norm()
            self._u[key] = (float(self.params["steering_coeff"]) * u).to(device=device, dtype=dtype)
        return self._u[key]

    def parameters(self, model) -> list[torch.nn.Parameter]:
        self._check_layers(model)
        layers = decoder_layers(model)
        params = []
        for i in self.params["layers"]:
            module = layers[i].get_submodule(self.params["module"])
            params.extend(module.parameters())
        return params

    def loss(self, model, forget_batch, retain_batch, ref=None):
        self._need_ref(ref)
        self._check_layers(model)
        loss = self.forget_loss(model, forget_batch, ref)
        if float(self.params["alpha"]) != 0:
            loss = loss + self.retain_loss(model, retain_batch, ref)
        return loss

    def forget_loss(self, model, forget_batch, ref=None):
        self._check_layers(model)
        h_f = layer_output(model, forget_batch, int(self.params["layer"]))
        target = self.control_vector(h_f.size(-1), h_f.device).expand_as(h_f)
        return masked_mse(h_f, target, forget_batch["attention_mask"])

    def retain_loss(self, model, retain_batch, ref=None):
        alpha = float(self.params["alpha"])
        if alpha == 0:
            return 0.0
        self._need_ref(ref)
        if retain_batch is None:
            raise ValueError(f"objective 'rmu' needs a retain batch (alpha {alpha})")
        layer = int(self.params["layer"])
        h_r = layer_output(model, retain_batch, layer)
        with torch.no_grad():
            h_ref = layer_output(ref, retain_batch, layer).to(h_r.device)
        return alpha * masked_mse(h_r, h_ref, retain_batch["attention_mask"])
