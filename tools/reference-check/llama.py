"""Minimal PyTorch Llama (my own port of the HF modeling code's maths) for the cross-check.
Module names mirror HF (model.layers[i].self_attn / .mlp, model.norm, lm_head) so the reference's
forward(pre) hooks attach the same way; hidden_states follow HF: [emb, out_0 .. out_{L-2}, norm(out_{L-1})]."""
import json, struct, math
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == '__metadata__': continue
        a, b = v['data_offsets']
        assert v['dtype'] == 'F32', v['dtype']
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy().reshape(v['shape']))
    return out

class Cfg:
    def __init__(self, d): self.__dict__.update(d)

class RMSNorm(nn.Module):
    def __init__(self, w, eps):
        super().__init__(); self.weight = nn.Parameter(w, requires_grad=False); self.eps = eps
    def forward(self, x):
        v = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(v + self.eps))

def rope(x, cos, sin):
    h = x.shape[-1] // 2
    rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)
    return x * cos + rot * sin

class Attn(nn.Module):
    def __init__(self, cfg, W, p):
        super().__init__()
        self.nh, self.nkv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q = W[p + 'q_proj.weight']; self.k = W[p + 'k_proj.weight']; self.v = W[p + 'v_proj.weight']; self.o = W[p + 'o_proj.weight']
    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = (x @ self.q.T).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = (x @ self.k.T).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = (x @ self.v.T).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, 1); v = v.repeat_interleave(rep, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        a = torch.softmax(s.float(), dim=-1) @ v
        return a.transpose(1, 2).reshape(B, T, -1) @ self.o.T

class MLP(nn.Module):
    def __init__(self, W, p):
        super().__init__(); self.g = W[p + 'gate_proj.weight']; self.u = W[p + 'up_proj.weight']; self.d = W[p + 'down_proj.weight']
    def forward(self, x):
        return (F.silu(x @ self.g.T) * (x @ self.u.T)) @ self.d.T

class Block(nn.Module):
    def __init__(self, cfg, W, i):
        super().__init__()
        p = f'model.layers.{i}.'
        self.input_layernorm = RMSNorm(W[p + 'input_layernorm.weight'], cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(W[p + 'post_attention_layernorm.weight'], cfg.rms_norm_eps)
        self.self_attn = Attn(cfg, W, p + 'self_attn.')
        self.mlp = MLP(W, p + 'mlp.')
    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return (h + self.mlp(self.post_attention_layernorm(h)),)

class Out:
    def __init__(self, logits, hidden_states): self.logits = logits; self.hidden_states = hidden_states

class Llama(nn.Module):
    def __init__(self, folder):
        super().__init__()
        self.config = Cfg(json.load(open(folder + '/config.json')))
        c = self.config
        if not hasattr(c, 'head_dim') or c.head_dim is None: c.head_dim = c.hidden_size // c.num_attention_heads
        W = load_safetensors(folder + '/model.safetensors')
        self.embed = W['model.embed_tokens.weight']
        self.layers = nn.ModuleList([Block(c, W, i) for i in range(c.num_hidden_layers)])
        self.norm = RMSNorm(W['model.norm.weight'], c.rms_norm_eps)
        self.lm_head = W.get('lm_head.weight', self.embed)
        self.device = torch.device('cpu')
    def forward(self, input_ids, attention_mask, output_hidden_states=False, use_cache=False):
        B, T = input_ids.shape
        x = self.embed[input_ids]
        # HF forward (no generate): positions 0..T-1 whatever the padding; RoPE only sees differences.
        pos = torch.arange(T, dtype=torch.float32)
        inv = 1.0 / (self.config.rope_theta ** (torch.arange(0, self.config.head_dim, 2, dtype=torch.float32) / self.config.head_dim))
        f = torch.outer(pos, inv); emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        allowed = causal[None, None] & attention_mask.bool()[:, None, None, :]
        mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        hs = []
        for blk in self.layers:
            hs.append(x)
            x = blk(x, cos, sin, mask)[0]
        x = self.norm(x)
        hs.append(x)
        return Out(x @ self.lm_head.T, tuple(hs) if output_hidden_states else None)
