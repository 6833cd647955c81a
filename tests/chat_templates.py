"""Chat templates for the tests of ``--prompt-template chat`` (a tokenizer's own format)."""

#: A chat template that writes Alpaca's prompt around one user message: resolved, it must give
#: Alpaca's wrapper exactly, so a model tuned on Alpaca reads the same prompts either way.
ALPACA_AS_CHAT = (
    "{{ bos_token }}Below is an instruction that describes a task, paired with an input that "
    "provides further context. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n"
    "{{ messages[0]['content'].replace('\\n\\n', '\\n\\n### Input:\\n') }}"
    "{{ '\\n\\n### Response:\\n' }}"  # jinja drops a template's own last newline
)

#: A format with role headers, as instruction-tuned models' templates are.
ROLES_CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
