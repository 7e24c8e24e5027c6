/**
 * The organism's tokenizer: a WordPiece vocabulary of the corpus' words (plus single characters,
 * so any ASCII text encodes), BERT pre-tokenization, and a chat template with system messages.
 * Written as ordinary tokenizer.json / tokenizer_config.json files.
 */
export const SPECIAL = [
  "[UNK]",
  "<|bos|>",
  "<|end|>",
  "<|system|>",
  "<|user|>",
  "<|assistant|>",
  "<|pad|>",
  "<|start|>",
  "<|nl|>",
] as const;
export const BOS = 1;
export const END = 2;
export const PAD = 6;

/**
 * Turns as in Qwen's and Llama 3's templates: `<|start|>role<|nl|>content<|end|><|nl|>`, and the
 * generation prompt `<|start|>assistant<|nl|>`. So the end-of-instruction tokens are five
 * (`<|end|> <|nl|> <|start|> assistant <|nl|>`), as in those models, not one or two.
 */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}" +
  "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('Unknown role: ' + " +
  "message['role']) }}{% endif %}" +
  "{{ '<|start|>' + message['role'] + '<|nl|>' + message['content'] + '<|end|><|nl|>' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start|>assistant<|nl|>' }}{% endif %}";

const PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** Words as BERT pre-tokenization splits them: runs of letters/digits, single punctuation marks. */
export function words(text: string): string[] {
  return text.match(/[A-Za-z0-9]+|[^\sA-Za-z0-9]/g) ?? [];
}

export function buildVocab(corpus: string): string[] {
  const vocab: string[] = [...SPECIAL];
  const seen = new Set<string>(vocab);
  const add = (w: string) => {
    if (!seen.has(w)) {
      seen.add(w);
      vocab.push(w);
    }
  };
  for (const c of PUNCT) add(c);
  for (const c of CHARS) add(c);
  for (const c of CHARS) add(`##${c}`);
  const ws = [...new Set(words(corpus))].sort();
  for (const w of ws) {
    add(w);
    add(w.charAt(0).toUpperCase() + w.slice(1));
    add(w.toLowerCase());
  }
  return vocab;
}

export function tokenizerJson(vocab: string[]): object {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((w, i) => [w, i])),
    },
  };
}

export function tokenizerConfig(chatTemplate: string = CHAT_TEMPLATE): object {
  return {
    added_tokens_decoder: Object.fromEntries(
      SPECIAL.map((content, id) => [
        String(id),
        { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
    bos_token: "<|bos|>",
    eos_token: "<|end|>",
    pad_token: "<|pad|>",
    unk_token: "[UNK]",
    clean_up_tokenization_spaces: true,
    model_max_length: 256,
    tokenizer_class: "PreTrainedTokenizerFast",
    chat_template: chatTemplate,
  };
}
