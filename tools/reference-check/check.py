"""Run the COSMIC authors' own selection code on a cosmic run's model and prompts, and compare.

usage: python3 tools/reference-check/check.py --reference COSMIC_CHECKOUT --model MODEL_DIR --run RUN_DIR
       (after: node tools/reference-check/token_ids.mjs MODEL_DIR RUN_DIR RUN_DIR/token_ids.json)

The authors' code (github.com/wang-research-lab/COSMIC) is imported from COSMIC_CHECKOUT, unmodified:
pipeline/submodules/generate_directions_cosmic.py (generate_directions), select_direction_cosmic.py
(select_direction) and pipeline/utils/hook_utils.py; compute_and_save_similarity is taken from
pipeline/run_pipeline_cosmic_ace.py. The model runs through llama.py, a small PyTorch port of the HF
Llama forward with HF's module layout, so the authors' forward hooks attach as they do on HF models.
Only Llama-architecture folders (such as cosmic's organisms) are supported. Needs torch and numpy.
Exit status 0 when the candidate directions, layer ranking, every score and the selection agree.
"""
import argparse, ast, json, os, sys, tempfile, time, types
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama import Llama, load_safetensors


def stub_missing_modules():
    """Typing, plotting and progress helpers the selection code imports but this check does not need."""
    try:
        import jaxtyping  # noqa: F401
    except ImportError:
        m = types.ModuleType("jaxtyping")
        class _Annotation:
            def __class_getitem__(cls, item): return cls
        m.Float, m.Int = type("Float", (_Annotation,), {}), type("Int", (_Annotation,), {})
        sys.modules["jaxtyping"] = m
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        class _Anything:
            def __getattr__(self, name): return _Anything()
            def __call__(self, *a, **k): return _Anything()
        plt = types.ModuleType("matplotlib.pyplot")
        plt.subplots = lambda *a, **k: (_Anything(), _Anything())
        plt.savefig = lambda *a, **k: None
        mpl = types.ModuleType("matplotlib"); mpl.pyplot = plt
        sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = mpl, plt
    try:
        import tqdm  # noqa: F401
    except ImportError:
        m = types.ModuleType("tqdm"); m.tqdm = lambda it=None, *a, **k: it
        sys.modules["tqdm"] = m
    try:
        import einops  # noqa: F401
    except ImportError:
        m = types.ModuleType("einops")
        def rearrange(*a, **k): raise RuntimeError("einops is not installed")
        m.rearrange = rearrange
        sys.modules["einops"] = m
    # model_base.py imports transformers; the selection code uses ModelBase only as an annotation.
    mb = types.ModuleType("pipeline.model_utils.model_base"); mb.ModelBase = object
    sys.modules["pipeline.model_utils.model_base"] = mb


def authors_similarity_fn(reference, second_half):
    """compute_and_save_similarity from run_pipeline_cosmic_ace.py, compiled on its own (the rest of
    that file needs the authors' datasets). Its `similarities[:L//2] = max(...)` line is COSMIC's rule
    for weakly aligned models; it is dropped unless the run used --steer-toward-refusal."""
    from pipeline.utils.hook_utils import add_hooks
    path = os.path.join(reference, "pipeline", "run_pipeline_cosmic_ace.py")
    tree = ast.parse(open(path).read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compute_and_save_similarity")
    if not second_half:
        fn.body = [s for s in fn.body if not (isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Subscript)
                                               and getattr(s.targets[0].value, "id", "") == "similarities")]
    ns = {"torch": torch, "np": np, "add_hooks": add_hooks}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), ns)
    return ns["compute_and_save_similarity"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, help="checkout of github.com/wang-research-lab/COSMIC")
    ap.add_argument("--model", required=True); ap.add_argument("--run", required=True)
    ap.add_argument("--ids", help="token ids from token_ids.mjs (default RUN/token_ids.json)")
    ap.add_argument("--kl-threshold", type=float, default=0.1); ap.add_argument("--prune-layers", type=float, default=0.2)
    ap.add_argument("--tolerance", type=float, default=1e-4, help="largest score difference accepted")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    ids_file = a.ids or os.path.join(a.run, "token_ids.json")
    for path, what in [(os.path.join(a.reference, "pipeline", "submodules", "select_direction_cosmic.py"), "--reference is not a COSMIC checkout"),
                       (os.path.join(a.run, "summary.json"), "--run is not a finished cosmic run folder"),
                       (ids_file, f"run: node tools/reference-check/token_ids.mjs {a.model} {a.run} {ids_file}")]:
        if not os.path.exists(path):
            sys.exit(f"check.py: {path}: missing ({what})")
    sys.path.insert(0, os.path.abspath(a.reference))
    stub_missing_modules()
    from pipeline.submodules.generate_directions_cosmic import generate_directions
    from pipeline.submodules.select_direction_cosmic import select_direction

    ids = json.load(open(ids_file))
    summary = json.load(open(os.path.join(a.run, "summary.json")))
    layers_file = json.load(open(os.path.join(a.run, "select_direction", "COSMIC_evaluation_layers.json")))
    table = {r["instruction"]: r["ids"] for k in ["harmful_train", "harmless_train", "harmful_val", "harmless_val"] for r in ids[k]}
    inst = lambda k: [r["instruction"] for r in ids[k]]

    class Tokenized:
        def __init__(self, input_ids, attention_mask): self.input_ids, self.attention_mask = input_ids, attention_mask

    def tokenize_instructions_fn(instructions, system=None):
        # The ids already carry the run's system message (cosmic's --system), rendered by the model's template.
        seqs = [table[s] for s in instructions]
        T = max(map(len, seqs))
        input_ids = torch.zeros((len(seqs), T), dtype=torch.long); mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):  # left padding, as the reference
            input_ids[i, T - len(s):] = torch.tensor(s); mask[i, T - len(s):] = 1
        return Tokenized(input_ids, mask)

    class ModelBase: pass
    mb = ModelBase()
    mb.model = Llama(a.model)
    mb.model_block_modules = list(mb.model.layers)
    mb.model_attn_modules = [l.self_attn for l in mb.model.layers]
    mb.model_mlp_modules = [l.mlp for l in mb.model.layers]
    mb.eoi_toks = ids["eoi"]
    mb.tokenize_instructions_fn = tokenize_instructions_fn
    mb.tokenizer = types.SimpleNamespace(batch_decode=lambda toks: [str(t) for t in toks])
    L = mb.model.config.num_hidden_layers
    ok = True
    t0 = time.time()
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        mean_diffs, harmless_mean = generate_directions(mb, inst("harmful_train"), inst("harmless_train"), artifact_dir=tmp)
        cand, ref = mean_diffs[0], harmless_mean[0]  # block inputs (resid_pre)
        ours = load_safetensors(os.path.join(a.run, "generate_directions", "mean_diffs.safetensors"))
        nz = [l for l in range(L) if float(cand[:, l].norm()) > 1e-6 * float(cand.norm())]
        rel = lambda x, y: float(((x - y).norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-30)).max())
        e_dir = rel(cand[:, nz], ours["mean_diffs"][:, nz].double()); e_ref = rel(ref, ours["harmless_means"].double())
        print(f"candidate directions r[p,l]: max relative difference {e_dir:.2e}; harmless means μ-: {e_ref:.2e}")
        ok &= e_dir < 1e-4 and e_ref < 1e-4

        sim = authors_similarity_fn(a.reference, bool(layers_file.get("second_half_only")))
        theirs = sim(mb.model, inst("harmful_train"), inst("harmless_train"), tokenize_instructions_fn, fraction=1.0)
        mine = layers_file["all_layers_ranked"]
        theirs_restricted = [l for l in theirs if l in mine]
        print(f"layer ranking (ascending cosine similarity): reference {theirs}, cosmic {mine}"
              f"{' (cosmic ranks only the layers it may choose)' if len(mine) < len(theirs) else ''}")
        ok &= theirs_restricted == mine
        low = summary["L_low"]
        print(f"L_low: cosmic {low} (the reference takes int(0.1 L) = {int(0.1 * L)} layers; at least one is used)")

        affine = summary["mode"] == "affine"
        if not affine:
            print("note: the reference's linear ablation hooks edit activations in place (a known bug cosmic does not copy); expect differences")
        pos, layer, _, _ = select_direction(mb, inst("harmful_val"), inst("harmless_val"), cand.float(), ref.float(), low,
                                            artifact_dir=tmp, affine_steering=affine, kl_threshold=a.kl_threshold,
                                            prune_layer_percentage=a.prune_layers)
        ref_scores = json.load(open(os.path.join(tmp, "direction_evaluations.json")))
    our_scores = {(e["position"], e["layer"]): e for e in json.load(open(os.path.join(a.run, "select_direction", "direction_evaluations.json")))}
    worst = {"refusal_score": 0.0, "steering_score": 0.0, "kl_div_score": 0.0}
    n = 0
    for e in ref_scores:
        o = our_scores.get((e["position"], e["layer"]))
        if e["layer"] not in nz or o is None:
            continue  # zero candidates (layer 0): cosmic discards them
        n += 1
        for k in worst:
            worst[k] = max(worst[k], abs(e[k] - o[k]))
    print(f"scores of {n} candidates: max |difference| " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    ok &= max(worst.values()) <= a.tolerance
    same = (pos, layer) == (summary["cosmic"]["position"], summary["cosmic"]["layer"])
    print(f"selection: reference (position {pos}, layer {layer}), cosmic (position {summary['cosmic']['position']}, layer {summary['cosmic']['layer']}): {'same' if same else 'DIFFERENT'}")
    ok &= same
    print(f"{'agree' if ok else 'DISAGREE'} ({time.time() - t0:.0f} s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
