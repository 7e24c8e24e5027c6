"""Independent float32 PyTorch re-implementation of Hugging Face transformers'
decoder-only causal LMs, for producing reference activations.

Ported from the transformers sources (eager attention path):
  models/llama/modeling_llama.py     LlamaForCausalLM   (attention_bias, mlp_bias, rope_scaling incl. "llama3")
  models/mistral/modeling_mistral.py MistralForCausalLM (= llama, explicit head_dim, sliding_window mask)
  models/qwen2/modeling_qwen2.py     Qwen2ForCausalLM   (q/k/v bias, o no bias)
  models/qwen3/modeling_qwen3.py     Qwen3ForCausalLM   (per-head q_norm/k_norm before RoPE, head_dim from config)
  models/gemma/modeling_gemma.py     GemmaForCausalLM   (x*sqrt(hidden), RMSNorm*(1+w), gelu-tanh)
  models/gemma2/modeling_gemma2.py   Gemma2ForCausalLM  (4 norms/layer, attn + final logit softcapping,
                                                         query_pre_attn_scalar, sliding window on even layers)
  models/phi3/modeling_phi3.py       Phi3ForCausalLM    (fused qkv_proj, fused gate_up_proj)
  models/gemma3/modeling_gemma3.py   Gemma3ForCausalLM  (model_type gemma3_text: Gemma-2's four norms, (1+w) q/k norms,
                                                         layer_types / sliding_window_pattern, a local RoPE base
                                                         on sliding layers, optional soft-caps)
  modeling_rope_utils.py             default / linear / llama3 / yarn / longrope / dynamic inverse frequencies
                                     (longrope and dynamic depend on the call's sequence length, as in HF's
                                     dynamic_rope_update; generation reproduces HF's cached decoding, where
                                     each position keeps the frequencies of the call that first processed it)

Everything is computed in float32 on CPU regardless of the checkpoint's storage
dtype (BF16/F16 weights are upcast exactly).  Only the no-KV-cache full
forward is implemented; greedy generation recomputes the full forward each step
(numerically this is what HF's cached path computes up to float rounding).

Batches may be LEFT padded; `attention_mask` [B,T] (1 = real token) is turned
into HF's additive 4D mask (finfo(float32).min on masked entries) and
position_ids = cumsum(mask)-1, masked_fill(mask==0, 1), exactly as
GenerationMixin / prepare_inputs_for_generation do.

Hook points (see Intervention):
  block_in[l]  : the hidden state entering decoder layer l (a forward pre-hook on
                 model.layers[l]; for Gemma/Gemma2 layer 0 sees the sqrt(hidden)-scaled embedding)
  attn_out[l]  : the output of model.layers[l].self_attn (after o_proj; for Gemma2
                 BEFORE post_attention_layernorm, exactly like a forward hook on self_attn)
  mlp_out[l]   : the output of model.layers[l].mlp (after down_proj; for Gemma2 BEFORE
                 post_feedforward_layernorm)
resid_pre[l] captured = block_in[l] after any block-input intervention was applied.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from safetensors_io import load_checkpoint_tensors

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")

# per-architecture defaults of the HF config classes for fields we read
_TIE_DEFAULT = {"llama": False, "mistral": False, "qwen2": False, "qwen3": False,
                "gemma": True, "gemma2": True, "gemma3_text": True, "phi3": False}
_EPS_DEFAULT = {"llama": 1e-6, "mistral": 1e-6, "qwen2": 1e-6, "qwen3": 1e-6,
                "gemma": 1e-6, "gemma2": 1e-6, "gemma3_text": 1e-6, "phi3": 1e-5}

# ----------------------------------------------------------------------------------------------
# interventions
# ----------------------------------------------------------------------------------------------
@dataclass
class Intervention:
    """kind:
      "none"
      "ablate" : x <- x - (x.r^)r^ at every block input, every self_attn output and every mlp output
      "actadd" : x <- x + alpha*r           at block input of `layer` (r NOT normalised)
      "ace"    : x <- x - (x.r^)r^ + (mu.r^)r^ + alpha*r   at block input of `layer`
    All apply at every sequence position (padding included; it is masked anyway)."""
    kind: str = "none"
    direction: Optional[torch.Tensor] = None  # r, [hidden]
    layer: int = 0
    alpha: float = 0.0
    reference: Optional[torch.Tensor] = None  # mu, [hidden]

    def _rhat(self, like: torch.Tensor) -> torch.Tensor:
        r = self.direction.to(like.dtype)
        return r / r.norm()

    @staticmethod
    def _project_out(x: torch.Tensor, rhat: torch.Tensor) -> torch.Tensor:
        proj = torch.matmul(x, rhat)  # [..., ]
        return x - proj.unsqueeze(-1) * rhat

    def block_in(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "ablate":
            return self._project_out(x, self._rhat(x))
        if self.kind == "actadd" and layer == self.layer:
            return x + self.alpha * self.direction.to(x.dtype)
        if self.kind == "ace" and layer == self.layer:
            rhat = self._rhat(x)
            mu_proj = torch.dot(self.reference.to(x.dtype), rhat)
            return self._project_out(x, rhat) + mu_proj * rhat + self.alpha * self.direction.to(x.dtype)
        return x

    def attn_out(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "ablate":
            return self._project_out(x, self._rhat(x))
        return x

    def mlp_out(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "ablate":
            return self._project_out(x, self._rhat(x))
        return x


NO_INTERVENTION = Intervention("none")


# ----------------------------------------------------------------------------------------------
# building blocks (faithful to the HF eager code paths, float32)
# ----------------------------------------------------------------------------------------------
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, one_plus: bool) -> torch.Tensor:
    # LlamaRMSNorm:  weight * (x * rsqrt(mean(x^2) + eps))
    # GemmaRMSNorm:  (x * rsqrt(mean(x^2) + eps)) * (1 + weight)
    var = x.pow(2).mean(-1, keepdim=True)
    h = x * torch.rsqrt(var + eps)
    if one_plus:
        return h * (1.0 + weight)
    return weight * h


def act_fn(name: str):
    # transformers.activations.ACT2FN
    if name in ("silu", "swish"):
        return F.silu
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        if name != "gelu_pytorch_tanh":
            raise NotImplementedError(name)
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise NotImplementedError(f"activation {name}")


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def _default_inv_freq(base: float, dim: int) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_parameters(cfg: dict, head_dim: int, seq_len: Optional[int] = None, local: bool = False):
    """modeling_rope_utils.ROPE_INIT_FUNCTIONS -> (inv_freq float32 [dim/2], attention_scaling).
    seq_len = torch.max(position_ids) + 1 of the current call, for the types whose frequencies
    depend on it (dynamic_rope_update): longrope (short factors up to
    original_max_position_embeddings, long ones beyond) and dynamic (NTK base growth beyond
    max_position_embeddings; HF's growth-only cache across calls is not modelled: every call
    starts from the configured length, which is what a freshly loaded HF model does).
    local = Gemma 3's sliding layers: rope_local_base_freq, no scaling."""
    partial = float(cfg.get("partial_rotary_factor", 1.0) or 1.0)
    if partial != 1.0:
        raise NotImplementedError("partial_rotary_factor != 1")
    dim = int(head_dim * partial)
    if local:
        return _default_inv_freq(float(cfg.get("rope_local_base_freq", 10000.0)), dim), 1.0
    base = float(cfg.get("rope_theta", 10000.0))
    inv_freq = _default_inv_freq(base, dim)
    attention_factor = 1.0
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv_freq, attention_factor
    rope_type = rs.get("rope_type", rs.get("type"))
    mpe = cfg["max_position_embeddings"]
    if rope_type in (None, "default"):
        pass
    elif rope_type == "linear":
        inv_freq = inv_freq / rs["factor"]
    elif rope_type == "llama3":
        factor = rs["factor"]
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    elif rope_type == "dynamic":
        factor = rs["factor"]
        n = mpe if seq_len is None else max(int(seq_len), mpe)
        base = base * ((factor * n / mpe) - (factor - 1)) ** (dim / (dim - 2))
        inv_freq = _default_inv_freq(base, dim)
    elif rope_type == "yarn":
        # transformers 5 semantics: `factor` as given (else max/original), truncate default True
        orig = rs.get("original_max_position_embeddings") or mpe
        factor = rs.get("factor") or mpe / orig

        def get_mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        attention_factor = rs.get("attention_factor")
        if attention_factor is None:
            ms, msd = rs.get("mscale"), rs.get("mscale_all_dim")
            attention_factor = float(get_mscale(factor, ms) / get_mscale(factor, msd)) if ms and msd \
                else get_mscale(factor)
        beta_fast = rs.get("beta_fast") or 32
        beta_slow = rs.get("beta_slow") or 1

        def correction_dim(rot):
            return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
        if rs.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
        extra = 1 - ramp  # 1: keep the original (extrapolated) frequency
        inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extra) + (1.0 / pos_freqs) * extra
    elif rope_type == "longrope":
        orig = rs.get("original_max_position_embeddings") or cfg.get("original_max_position_embeddings") or mpe
        factor = rs.get("factor") or mpe / orig
        attention_factor = rs.get("attention_factor")
        if attention_factor is None:
            attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        use_long = seq_len is not None and seq_len > orig
        ext = torch.tensor(rs["long_factor"] if use_long else rs["short_factor"], dtype=torch.float32)
        shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        inv_freq = 1.0 / (ext * base ** shape)
    else:
        raise NotImplementedError(f"rope_scaling type {rope_type}")
    return inv_freq, attention_factor


def rope_depends_on_length(cfg: dict) -> bool:
    rs = cfg.get("rope_scaling") or {}
    return rs.get("rope_type", rs.get("type")) in ("dynamic", "longrope")


def rope_cos_sin(inv_freq: torch.Tensor, attention_scaling: float, position_ids: torch.Tensor):
    # *RotaryEmbedding.forward: float32 outer product, cat(freqs, freqs)
    B = position_ids.shape[0]
    inv_freq_expanded = inv_freq[None, :, None].float().expand(B, -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos() * attention_scaling
    sin = emb.sin() * attention_scaling
    return cos, sin


def repeat_kv(h: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, nkv, s, d = h.shape
    if n_rep == 1:
        return h
    return h[:, :, None, :, :].expand(b, nkv, n_rep, s, d).reshape(b, nkv * n_rep, s, d)


def causal_mask_4d(attention_mask: Optional[torch.Tensor], B: int, T: int,
                   sliding_window: Optional[int] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """_prepare_4d_causal_attention_mask_with_cache_position (no cache: cache_position = arange(T)),
    plus the sliding-window band (key j visible from query i iff i - W < j <= i)."""
    min_dtype = torch.finfo(dtype).min
    mask = torch.full((T, T), min_dtype, dtype=dtype)
    if T != 1:
        mask = torch.triu(mask, diagonal=1)
    mask = mask[None, None, :, :].expand(B, 1, -1, -1).clone()
    if attention_mask is not None:
        padding_mask = mask + attention_mask[:, None, None, :].to(dtype)
        padding_mask = padding_mask == 0
        mask = mask.masked_fill(padding_mask, min_dtype)
    if sliding_window is not None:
        band = torch.tril(torch.ones_like(mask, dtype=torch.bool), diagonal=-sliding_window)
        mask = torch.where(band, torch.tensor(min_dtype, dtype=dtype), mask)
    return mask


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    return position_ids


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------
class HFRef:
    def __init__(self, config: dict, tensors: Dict[str, torch.Tensor], dtype: torch.dtype = torch.float32):
        """dtype=torch.float64 is a diagnostics-only mode (estimates float32 rounding noise);
        the reference outputs are always produced with the default float32."""
        self.cfg = cfg = dict(config)
        self.dtype = dtype
        # diagnostics only (selftest.py sensitivity analysis): names of HF behaviours to switch OFF
        self.debug_off: set = set()
        mt = cfg["model_type"]
        if mt not in SUPPORTED:
            raise NotImplementedError(f"model_type {mt}")
        self.mt = mt
        self.W = {k: v.to(dtype) for k, v in tensors.items()}
        self.H = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or self.H // self.nh
        self.eps = float(cfg.get("rms_norm_eps", _EPS_DEFAULT[mt]))
        self.gemma_like = mt in ("gemma", "gemma2", "gemma3_text")
        self.sandwich = mt in ("gemma2", "gemma3_text")
        if mt == "gemma2":
            self.scaling = float(cfg["query_pre_attn_scalar"]) ** -0.5
            self.attn_softcap = cfg.get("attn_logit_softcapping")
            self.final_softcap = cfg.get("final_logit_softcapping")
        elif mt == "gemma3_text":
            # Gemma3Attention passes no softcap to the attention function: attn_logit_softcapping is unused
            self.scaling = float(cfg.get("query_pre_attn_scalar", 256)) ** -0.5
            self.attn_softcap = None
            self.final_softcap = cfg.get("final_logit_softcapping")
        else:
            self.scaling = self.hd ** -0.5
            self.attn_softcap = None
            self.final_softcap = None
        if mt in ("gemma", "gemma2", "gemma3_text"):
            # Gemma2MLP: ACT2FN[config.hidden_activation]; GemmaMLP: ACT2FN[config.hidden_act]
            # (older GemmaMLP used hidden_activation, defaulting to gelu_pytorch_tanh). Fixtures set both equal.
            name = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
            if mt == "gemma" and cfg.get("hidden_act") and cfg.get("hidden_activation") \
                    and cfg["hidden_act"] != cfg["hidden_activation"]:
                raise ValueError("gemma config: hidden_act != hidden_activation is version-dependent in HF")
        else:
            name = cfg.get("hidden_act", "silu")
        self.act = act_fn(name)
        self.tie = bool(cfg.get("tie_word_embeddings", _TIE_DEFAULT[mt]))
        self.length_dependent_rope = rope_depends_on_length(cfg)
        self.layer_local_rope: List[bool] = [False] * self.L
        # per-layer sliding windows (None = full attention)
        sw = cfg.get("sliding_window")
        self.windows: List[Optional[int]] = []
        for l in range(self.L):
            if mt == "gemma2":
                lt = cfg.get("layer_types")
                is_sliding = (lt[l] == "sliding_attention") if lt else (not bool(l % 2))
                self.windows.append(sw if is_sliding else None)
            elif mt == "gemma3_text":
                # Gemma3TextConfig: layer_types, else every sliding_window_pattern-th layer is global
                lt = cfg.get("layer_types")
                pattern = cfg.get("sliding_window_pattern", 6)
                is_sliding = (lt[l] == "sliding_attention") if lt else bool((l + 1) % pattern)
                self.windows.append(sw if is_sliding else None)
                self.layer_local_rope[l] = is_sliding
            elif mt in ("mistral", "phi3"):
                self.windows.append(sw)
            elif mt in ("qwen2", "qwen3"):
                use = cfg.get("use_sliding_window", False)
                mwl = cfg.get("max_window_layers", self.L)
                self.windows.append(sw if (use and sw is not None and l >= mwl) else None)
            else:
                self.windows.append(None)
        self._check_weights()

    # -------------------------------------------------------------------------------------- io
    @classmethod
    def from_folder(cls, folder: str, dtype: torch.dtype = torch.float32) -> "HFRef":
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        return cls(cfg, load_checkpoint_tensors(folder, as_float32=True), dtype=dtype)

    def expected_weight_names(self) -> List[str]:
        mt, names = self.mt, ["model.embed_tokens.weight", "model.norm.weight"]
        if not self.tie:
            names.append("lm_head.weight")
        for l in range(self.L):
            p = f"model.layers.{l}."
            names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
            if mt in ("gemma2", "gemma3_text"):
                names += [p + "pre_feedforward_layernorm.weight", p + "post_feedforward_layernorm.weight"]
            if mt == "phi3":
                names += [p + "self_attn.qkv_proj.weight", p + "self_attn.o_proj.weight",
                          p + "mlp.gate_up_proj.weight", p + "mlp.down_proj.weight"]
                continue
            for n in ("q", "k", "v", "o"):
                names.append(p + f"self_attn.{n}_proj.weight")
            if self._attn_bias_qkv():
                names += [p + f"self_attn.{n}_proj.bias" for n in ("q", "k", "v")]
            if self._attn_bias_o():
                names.append(p + "self_attn.o_proj.bias")
            if mt in ("qwen3", "gemma3_text"):
                names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
            for n in ("gate", "up", "down"):
                names.append(p + f"mlp.{n}_proj.weight")
                if self._mlp_bias():
                    names.append(p + f"mlp.{n}_proj.bias")
        return names

    def _attn_bias_qkv(self) -> bool:
        if self.mt == "qwen2":
            return True
        if self.mt in ("llama", "qwen3", "gemma", "gemma2", "gemma3_text"):
            return bool(self.cfg.get("attention_bias", False))
        return False

    def _attn_bias_o(self) -> bool:
        if self.mt in ("llama", "qwen3", "gemma", "gemma2", "gemma3_text"):
            return bool(self.cfg.get("attention_bias", False))
        return False

    def _mlp_bias(self) -> bool:
        return self.mt == "llama" and bool(self.cfg.get("mlp_bias", False))

    def _check_weights(self):
        need = set(self.expected_weight_names())
        have = set(self.W)
        missing = need - have
        if missing:
            raise KeyError(f"missing weights: {sorted(missing)[:8]}")
        extra = have - need - {"lm_head.weight"}
        if extra:
            raise KeyError(f"unexpected weights: {sorted(extra)[:8]}")

    def lm_head_weight(self) -> torch.Tensor:
        return self.W["model.embed_tokens.weight"] if self.tie else self.W["lm_head.weight"]

    # -------------------------------------------------------------------------------------- modules
    def _lin(self, x, name, bias: bool):
        return F.linear(x, self.W[name + ".weight"], self.W[name + ".bias"] if bias else None)

    def _norm(self, x, name):
        one_plus = self.gemma_like and "one_plus" not in self.debug_off
        return rms_norm(x, self.W[name + ".weight"], self.eps, one_plus=one_plus)

    def _attention(self, l: int, x: torch.Tensor, cos, sin, mask) -> torch.Tensor:
        p = f"model.layers.{l}.self_attn."
        B, T, _ = x.shape
        hd = self.hd
        if self.mt == "phi3":
            qkv = self._lin(x, p + "qkv_proj", False)
            qp = self.nh * hd
            q = qkv[..., :qp]
            k = qkv[..., qp: qp + self.nkv * hd]
            v = qkv[..., qp + self.nkv * hd:]
        else:
            bqkv = self._attn_bias_qkv()
            q = self._lin(x, p + "q_proj", bqkv)
            k = self._lin(x, p + "k_proj", bqkv)
            v = self._lin(x, p + "v_proj", bqkv)
        q = q.view(B, T, -1, hd)
        k = k.view(B, T, -1, hd)
        v = v.view(B, T, -1, hd)
        if self.mt in ("qwen3", "gemma3_text") and "qk_norm" not in self.debug_off:
            # per-head RMSNorm over head_dim, before RoPE (Gemma 3: the (1 + w) kind)
            one_plus = self.mt == "gemma3_text"
            q = rms_norm(q, self.W[p + "q_norm.weight"], self.eps, one_plus=one_plus)
            k = rms_norm(k, self.W[p + "k_norm.weight"], self.eps, one_plus=one_plus)
        q = q.transpose(1, 2)
        k = k.transpose(1, 2)
        v = v.transpose(1, 2)
        c = cos.unsqueeze(1)
        s = sin.unsqueeze(1)
        if "rope_half" in self.debug_off:  # wrong convention: GPT-J interleaved pairs
            def rot_interleaved(x):
                x1, x2 = x[..., 0::2], x[..., 1::2]
                return torch.stack((-x2, x1), dim=-1).flatten(-2)
            ci = torch.cat([c[..., : hd // 2, None]] * 2, -1).flatten(-2)
            si = torch.cat([s[..., : hd // 2, None]] * 2, -1).flatten(-2)
            q = q * ci + rot_interleaved(q) * si
            k = k * ci + rot_interleaved(k) * si
        else:
            q = (q * c) + (rotate_half(q) * s)
            k = (k * c) + (rotate_half(k) * s)
        groups = self.nh // self.nkv
        if "gqa_interleave" in self.debug_off:  # wrong head mapping: tile instead of repeat_interleave
            k, v = k.repeat(1, groups, 1, 1), v.repeat(1, groups, 1, 1)
        else:
            k = repeat_kv(k, groups)
            v = repeat_kv(v, groups)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if self.attn_softcap is not None and "attn_softcap" not in self.debug_off:
            w = w / self.attn_softcap
            w = torch.tanh(w)
            w = w * self.attn_softcap
        w = w + mask[:, :, :, : k.shape[-2]]
        # HF: softmax(..., dtype=torch.float32).to(query.dtype); identical for float32 compute
        w = F.softmax(w, dim=-1, dtype=torch.float32 if self.dtype == torch.float32 else self.dtype)
        o = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(B, T, -1)
        return self._lin(o, p + "o_proj", self._attn_bias_o())

    def _mlp(self, l: int, x: torch.Tensor) -> torch.Tensor:
        p = f"model.layers.{l}.mlp."
        if self.mt == "phi3":
            up_states = self._lin(x, p + "gate_up_proj", False)
            gate, up_states = up_states.chunk(2, dim=-1)
            if "gate_up_order" in self.debug_off:
                gate, up_states = up_states, gate
            up_states = up_states * self.act(gate)
            return self._lin(up_states, p + "down_proj", False)
        b = self._mlp_bias()
        return self._lin(self.act(self._lin(x, p + "gate_proj", b)) * self._lin(x, p + "up_proj", b),
                         p + "down_proj", b)

    def rope_parameters(self, seq_len: Optional[int], local: bool = False):
        return rope_parameters(self.cfg, self.hd, seq_len, local)

    def _rope_tables(self, position_ids: torch.Tensor, column_seq_len: List[int], local: bool):
        """cos/sin [B,T,hd]; column t rotated with the frequencies of column_seq_len[t]."""
        cos = torch.empty(position_ids.shape + (self.hd,), dtype=torch.float32)
        sin = torch.empty_like(cos)
        for n in sorted(set(column_seq_len)):
            inv_freq, scaling = self.rope_parameters(n, local)
            c, s_ = rope_cos_sin(inv_freq, scaling, position_ids)
            cols = [t for t, m in enumerate(column_seq_len) if m == n]
            cos[:, cols], sin[:, cols] = c[:, cols], s_[:, cols]
        return cos.to(self.dtype), sin.to(self.dtype)

    # -------------------------------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                intervention: Intervention = NO_INTERVENTION, capture: bool = False,
                column_seq_len: Optional[List[int]] = None) -> Dict[str, torch.Tensor]:
        """input_ids [B,T] long; attention_mask [B,T] (1 real, 0 pad) or None.
        column_seq_len[t]: the `seq_len` (max position + 1) of the call that first processed column t,
        for RoPE types whose frequencies depend on it; default: one call over the whole batch.
        Returns {"logits": [B,T,V]} and, if capture, {"resid_pre": [B,L,T,H], "resid_post": [B,L,T,H]}
        (resid_post[l] = output of decoder layer l = resid_pre[l+1] before any block-input intervention;
        for the last layer it is the hidden state before the final norm)."""
        input_ids = torch.as_tensor(input_ids, dtype=torch.long)
        B, T = input_ids.shape
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask, dtype=torch.long)
            position_ids = position_ids_from_mask(attention_mask)
        else:
            position_ids = torch.arange(T).unsqueeze(0).expand(B, -1)
        if column_seq_len is None:
            column_seq_len = [int(position_ids.max()) + 1] * T
        tables = {local: self._rope_tables(position_ids, column_seq_len, local)
                  for local in set(self.layer_local_rope)}
        masks = {}
        for w in set(self.windows):
            masks[w] = causal_mask_4d(attention_mask, B, T, None if "sliding" in self.debug_off else w, self.dtype)

        h = F.embedding(input_ids, self.W["model.embed_tokens.weight"])
        if self.gemma_like and "embed_scale" not in self.debug_off:
            normalizer = torch.tensor(self.H ** 0.5, dtype=h.dtype)
            h = h * normalizer
        resid, post = [], []
        for l in range(self.L):
            p = f"model.layers.{l}."
            h = intervention.block_in(l, h)
            if capture:
                resid.append(h.clone())
            residual = h
            cos, sin = tables[self.layer_local_rope[l]]
            a = self._attention(l, self._norm(h, p + "input_layernorm"), cos, sin, masks[self.windows[l]])
            a = intervention.attn_out(l, a)
            if self.sandwich and "post_norms" not in self.debug_off:
                a = self._norm(a, p + "post_attention_layernorm")
            h = residual + a
            residual = h
            if self.sandwich:
                m = self._mlp(l, self._norm(h, p + "pre_feedforward_layernorm"))
                m = intervention.mlp_out(l, m)
                if "post_norms" not in self.debug_off:
                    m = self._norm(m, p + "post_feedforward_layernorm")
            else:
                m = self._mlp(l, self._norm(h, p + "post_attention_layernorm"))
                m = intervention.mlp_out(l, m)
            h = residual + m
            if capture:
                post.append(h.clone())
        h = self._norm(h, "model.norm")
        logits = F.linear(h, self.lm_head_weight())
        if self.final_softcap is not None and "final_softcap" not in self.debug_off:
            logits = logits / self.final_softcap
            logits = torch.tanh(logits)
            logits = logits * self.final_softcap
        out = {"logits": logits}
        if capture:
            out["resid_pre"] = torch.stack(resid, dim=1)
            out["resid_post"] = torch.stack(post, dim=1)
        return out

    # -------------------------------------------------------------------------------------- batching
    @staticmethod
    def left_pad(seqs: Sequence[Sequence[int]], pad_id: int = 0):
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            if len(s):
                ids[i, T - len(s):] = torch.tensor(list(s), dtype=torch.long)
                mask[i, T - len(s):] = 1
        return ids, mask

    @torch.no_grad()
    def generate_greedy(self, seqs: Sequence[Sequence[int]], max_new_tokens: int,
                        intervention: Intervention = NO_INTERVENTION, pad_id: int = 0):
        """Batched greedy decoding with left padding, full recompute each step, no EOS stopping.
        Returns (tokens [B][n], margins [B][n]) where margin = top1 - top2 logit at that step."""
        ids, mask = self.left_pad(seqs, pad_id)
        toks = [[] for _ in seqs]
        margins = [[] for _ in seqs]
        # HF's cached decoding: the prompt is one call (seq_len = T), each new token its own (T + s)
        T0 = ids.shape[1]
        column_seq_len = [T0] * T0
        for _ in range(max_new_tokens):
            logits = self.forward(ids, mask, intervention, column_seq_len=column_seq_len)["logits"][:, -1, :]
            column_seq_len = column_seq_len + [len(column_seq_len) + 1]
            top2 = torch.topk(logits, 2, dim=-1).values
            nxt = torch.argmax(logits, dim=-1)
            for b in range(len(seqs)):
                toks[b].append(int(nxt[b]))
                margins[b].append(float(top2[b, 0] - top2[b, 1]))
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones((len(seqs), 1), dtype=torch.long)], dim=1)
        return toks, margins
