#!/usr/bin/env python3
# make_chat_template_fixtures.py: renders every template in tests/data/chat_templates/*.jinja with every
# conversation of cases.json exactly the way transformers' tokenizer.apply_chat_template(tokenize=False) does
# (its own normalization, reasoning-field aliasing and sandboxed jinja2 environment), and writes
# tests/data/chat_templates/cases.json and expected.json ({template: {case: {"output"|"error": str}}}).
# It also renders the small SNIPPETS (one feature each) into snippets.json for the unit tests.
# Made with: transformers 5.24.0 (installed with --no-deps, no torch), jinja2 3.1.6, Python 3.11.
import json
import pathlib

from transformers.utils.chat_template_utils import _compile_jinja_template, _normalize_chat_messages, render_jinja_template

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "chat_templates"

# Per template: the special tokens the model's tokenizer passes (None = absent, as Qwen's bos) and
# the extra variables the test passes too.
TEMPLATES = {
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "qwen2_5": {"bos_token": None, "eos_token": "<|im_end|>"},
    "qwen3": {"bos_token": None, "eos_token": "<|im_end|>"},
    "llama3_1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3_2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "vars": {"date_string": "26 Jul 2024"}},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "mistral_v0_3": {"bos_token": "<s>", "eos_token": "</s>"},
    "deepseek_r1": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "deepseek_r1_distill": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city, in °C — or \"unknown\".",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
                "units": {"type": "string", "enum": ["metric", "imperial"]},
                "verbose": {"type": "boolean", "default": False},
                "extra": {"type": ["string", "null"], "default": None},
            },
            "required": ["city"],
        },
        "return": {"type": "string"},
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {"name": "search", "description": "Search the web.", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": []}},
}
SYS = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
U1 = {"role": "user", "content": "Hello! What's 2+2?"}
A1 = {"role": "assistant", "content": "2+2 is 4."}
U2 = {"role": "user", "content": "And 3*3?"}
A2 = {"role": "assistant", "content": "  9, of course.\n"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "call0A1b2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}],
}
RESULT = {"role": "tool", "tool_call_id": "call0A1b2", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"}
STR_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call0A1b2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"id": "call1C3d4", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"paris\"}"}},
    ],
}
RESULT2 = {"role": "tool", "tool_call_id": "call1C3d4", "content": "Paris is the capital of France."}
WEATHER_Q = {"role": "user", "content": "What's the weather in Paris?"}

CASES = [
    {"name": "single_user", "messages": [U1], "add_generation_prompt": True},
    {"name": "single_user_no_prompt", "messages": [U1], "add_generation_prompt": False},
    {"name": "system_user", "messages": [SYS, U1], "add_generation_prompt": True},
    {"name": "multi_turn", "messages": [U1, A1, U2], "add_generation_prompt": True},
    {"name": "multi_turn_system_closed", "messages": [SYS, U1, A1, U2, A2], "add_generation_prompt": False},
    {
        "name": "odd_text",
        "messages": [{"role": "user", "content": "  \n\tMixed: é 中文 🙂 \"quotes\" 'single' \\backslash\\ {{ not a tag }} {% raw %}\n  "}],
        "add_generation_prompt": True,
    },
    {"name": "tools_first_turn", "messages": [WEATHER_Q], "tools": [WEATHER_TOOL, SEARCH_TOOL], "add_generation_prompt": True},
    {"name": "tools_system_first_turn", "messages": [SYS, WEATHER_Q], "tools": [WEATHER_TOOL], "add_generation_prompt": True},
    {"name": "tool_call_and_result", "messages": [SYS, WEATHER_Q, CALL, RESULT], "tools": [WEATHER_TOOL], "add_generation_prompt": True},
    {
        "name": "tool_calls_string_args",
        "messages": [WEATHER_Q, STR_CALL, RESULT, RESULT2, {"role": "assistant", "content": "It is 21.5 °C and clear."}],
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
        "add_generation_prompt": False,
    },
    {
        "name": "thinking_in_content",
        "messages": [U1, {"role": "assistant", "content": "<think>\nSimple sum.\n</think>\n\n2+2 is 4."}, U2],
        "add_generation_prompt": True,
    },
    {
        "name": "reasoning_content_last",
        "messages": [U1, {"role": "assistant", "content": "2+2 is 4.", "reasoning_content": "Add them."}],
        "add_generation_prompt": False,
    },
    {"name": "enable_thinking_false", "messages": [U1], "add_generation_prompt": True, "vars": {"enable_thinking": False}},
    {"name": "enable_thinking_true", "messages": [SYS, U1, A1, U2], "add_generation_prompt": True, "vars": {"enable_thinking": True}},
    {"name": "content_parts", "messages": [{"role": "user", "content": [{"type": "text", "text": " Describe this. "}, {"type": "image"}]}], "add_generation_prompt": True},
    {"name": "not_alternating", "messages": [U1, U2], "add_generation_prompt": True},
    {"name": "empty", "messages": [], "add_generation_prompt": True},
]


CTX = {
    "s": "  Hello, World!  ",
    "n": 7,
    "f": 2.5,
    "l": [3, 1, 2],
    "d": {"b": 1, "a": [1, 2], "c": None},
    "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "ok"}],
    "u": "héllo wörld",
}
SNIPPETS = [
    # literals and printing
    "{{ 1 }}|{{ -2 }}|{{ 1.5 }}|{{ 1e3 }}|{{ 0.1 + 0.2 }}|{{ 1/3 }}|{{ 10/2 }}|{{ 1e-7 }}|{{ 1e22 }}",
    "{{ 'a\\tb\\n\\\\' }}|{{ \"q'\" }}|{{ 'x' 'y' }}|{{ '\\u00e9\\x41' }}",
    "{{ none }}|{{ None }}|{{ true }}|{{ False }}|{{ [1, 'a', none, true, 2.0] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1, 2) }}",
    "{{ [\"it's\"] }}|{{ ['a\\nb'] }}|{{ undefined_thing }}|{{ d }}",
    # arithmetic and logic
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}",
    "{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'a' ~ 1 ~ none ~ true }} {{ [1] + [2] }} {{ 'a' + 'b' }} {{ 1 + 2.0 }} {{ true + 1 }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 'b' > 'a' }} {{ [1,2] < [1,3] }} {{ 'x' in 'xyz' }} {{ 2 not in l }}",
    "{{ n and 'yes' }}|{{ 0 or 'no' }}|{{ none or [] }}|{{ not n }}|{{ not not s }}|{{ 'a' if n > 5 else 'b' }}|{{ 'a' if n > 50 }}|",
    # attributes, items, slices
    "{{ msgs[0].role }}|{{ msgs[-1]['content'] }}|{{ d.b }}|{{ d['a'][1] }}|{{ d.missing }}|{{ l[10] }}|{{ l.0 }}|{{ s[2] }}|{{ u[1] }}",
    "{{ l[::-1] }}|{{ l[1:] }}|{{ l[:-1] }}|{{ l[::2] }}|{{ s[2:7] }}|{{ u[::-1] }}|{{ u[1:4] }}|{{ msgs[1:][0].role }}|{{ l[5:] }}|{{ l[-10:2] }}",
    # tests
    "{{ x is defined }} {{ n is defined }} {{ x is undefined }} {{ d.c is none }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ s is iterable }} {{ x is iterable }}",
    "{{ n is number }} {{ f is float }} {{ n is integer }} {{ true is boolean }} {{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ n is divisibleby(2) }} {{ 'a' is equalto 'a' }} {{ true is true }} {{ 0 is false }}",
    "{{ n is not none }} {{ d is sequence }} {{ 3 is in l }} {{ n is gt 3 }} {{ n is lt(3) }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ l is not string }}",
    # filters
    "{{ s | trim }}|{{ s|trim('! ') }}|{{ s|length }}|{{ u|length }}|{{ l|length }}|{{ d|length }}|{{ x|length }}|{{ l|count }}",
    "{{ l|join(', ') }}|{{ msgs|map(attribute='role')|join }}|{{ msgs|map(attribute='x', default='-')|list }}|{{ l|map('string')|join('+') }}",
    "{{ msgs|selectattr('role', 'equalto', 'user')|list|length }}|{{ msgs|rejectattr('role', 'eq', 'user')|map(attribute='content')|first }}|{{ msgs|selectattr('content')|list|length }}|{{ l|select('odd')|list }}|{{ l|reject('gt', 1)|list }}",
    "{{ l|first }}|{{ l|last }}|{{ s|first }}|{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ ['b', 'A', 'a']|sort }}|{{ msgs|sort(attribute='content')|map(attribute='content')|join }}|{{ l|reverse|list }}|{{ 'abc'|reverse }}",
    "{{ d|items|list }}|{{ d|dictsort }}|{{ {'b': 2, 'A': 1}|dictsort(by='value', reverse=true) }}|{{ x|items|list }}|{{ d.items()|list }}|{{ d.keys()|list }}|{{ d.values()|list }}",
    "{{ 'x'|upper }}|{{ 'ABC dEf'|lower }}|{{ 'hello world'|capitalize }}|{{ 'hello big-world (x)'|title }}|{{ 'aXa'|replace('a', 'b') }}|{{ 'aaa'|replace('a', 'b', 2) }}",
    "{{ x|default('dflt') }}|{{ ''|default('e', true) }}|{{ ''|d('e') }}|{{ n|d }}|{{ '42'|int + 1 }}|{{ '4.5'|float }}|{{ 'zz'|int }}|{{ 'zz'|int(7) }}|{{ 3.9|int }}|{{ n|float }}|{{ n|string + 'x' }}",
    "{{ -3|abs }}|{{ (-2.5)|abs }}|{{ 2.567|round(2) }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 3|round }}|{{ 2.1|round(0, 'ceil') }}|{{ 2.9|round(method='floor') }}|{{ [1, 2, 2, 'a', 'A']|unique|list }}",
    "{{ '<a href=\"x\">&\\'</a>'|e }}|{{ 'x'|safe }}|{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(first=true, blank=true) }}|{{ l|sum }}|{{ l|max }}|{{ l|min }}|{{ 'one two  three'|wordcount }}",
    # tojson as transformers overrides it
    "{{ d|tojson }}|{{ 'é\"\\n\\t<>&\\''|tojson }}|{{ [1.0, 2.5, 1e20, -0.0, true, none]|tojson }}|{{ {}|tojson }}|{{ []|tojson(indent=2) }}",
    "{{ d|tojson(indent=2) }}|{{ msgs[:1]|tojson(indent=4) }}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ 'é'|tojson(ensure_ascii=true) }}",
    # string and dict methods
    "{{ s.strip() }}|{{ s.lstrip() }}.|{{ s.rstrip() }}.|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\nA\\n'.lstrip('\\n') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}",
    "{{ 'a,b,,c'.split(',') }}|{{ '  a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'x</think>y</think>z'.split('</think>')[-1] }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aba'.replace('a', 'c') }}",
    "{{ '{} and {}'.format(1, 'two') }}|{{ '{0}{0}'.format('x') }}|{{ '{a}!'.format(a=3) }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.count('bc') }}|{{ '-'.join(['a', 'b']) }}|{{ '12'.isdigit() }}|{{ d.get('b') }}|{{ d.get('zz', 5) }}|{{ d.get('zz') }}",
    # statements
    "{% for m in msgs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}:{% endfor %}",
    "{% for m in msgs %}[{{ loop.previtem.role if loop.previtem is defined else '-' }} {{ loop.nextitem.content if loop.nextitem is defined else '-' }} {{ loop.cycle('a', 'b') }}]{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for x in [] %}no{% else %}empty{% endfor %}|{% for x in l if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}|{% for c in 'ab' %}{{ c }}{% endfor %}|{% for k in d %}{{ k }}{% endfor %}",
    "{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}|{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}",
    "{% set x = 5 %}{% for i in [1, 2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}|{% if true %}{% set y = 6 %}{% endif %}{{ y }}|{% set ns = namespace(a=1, b=[]) %}{% for i in l %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}|{% set a, b = [1, 2] %}{{ b }}{{ a }}",
    "{% if n > 10 %}big{% elif n > 5 %}mid{% elif n > 1 %}small{% else %}tiny{% endif %}|{% if x %}x{% endif %}|{% set blk %}in {{ n }}{% endset %}{{ blk }}|{% set d2 = dict(a=1, b=2) %}{{ d2 }}|{% with q = 3 %}{{ q }}{% endwith %}{{ q }}",
    "{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Yo') }} {{ greet(greeting='Hey', name='Cy') }}",
    "{% macro m(a) %}{{ a }}-{{ varargs }}-{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, z=4) }}|{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner {{ n }}{% endcall %}|{% filter upper %}abc {{ s|trim }}{% endfilter %}",
    "{# a comment #}x{#- trimmed -#}  y  {{- ' z ' -}}  w  {%- if true -%}  v  {%- endif -%}  !",
    "{% raw %}{{ not evaluated }}{% endraw %}|{% generation %}gen {{ n }}{% endgeneration %}|{{ strftime_now('') }}|{{ 'x' if (true and not false) }}",
    # whitespace: trim_blocks and lstrip_blocks
    "A\n  {% if true %}\n    B\n  {% endif %}\nC\n    {# c #}\nD {{ n }}\n  {{ n }}\n  {%+ if true %}E{% endif %}\n{% for i in l %}\n  {{ i }}\n{% endfor %}\n",
    "  {% if true %}a{% endif %}  \n{% if true +%}\nkept{% endif %}\r\nline\r\n",
]


def render_snippet(src):
    try:
        return {"output": _compile_jinja_template(src).render(**CTX)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def render(template_src, meta, case):
    kwargs = {k: v for k, v in (("bos_token", meta["bos_token"]), ("eos_token", meta["eos_token"])) if v is not None}
    kwargs.update(meta.get("vars", {}))
    kwargs.update(case.get("vars", {}))
    messages = _normalize_chat_messages(case["messages"])
    try:
        out, _ = render_jinja_template(
            conversations=[messages],
            tools=case.get("tools"),
            chat_template=template_src,
            add_generation_prompt=case["add_generation_prompt"],
            **kwargs,
        )
        return {"output": out[0]}
    except Exception as e:  # a failure is a fixture too: rill must fail on the same input
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    expected = {}
    for name, meta in TEMPLATES.items():
        src = (DATA / f"{name}.jinja").read_text(encoding="utf-8")
        expected[name] = {c["name"]: render(src, meta, c) for c in CASES}
    (DATA / "cases.json").write_text(json.dumps({"templates": TEMPLATES, "cases": CASES}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (DATA / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    snippets = [{"template": t, **render_snippet(t)} for t in SNIPPETS]
    (DATA / "snippets.json").write_text(json.dumps({"context": CTX, "snippets": snippets}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for sn in snippets:
        if "error" in sn:
            print("snippet raised:", sn["template"][:60], sn["error"])
    n_ok = sum("output" in r for t in expected.values() for r in t.values())
    print(f"{len(TEMPLATES)} templates x {len(CASES)} cases: {n_ok} rendered, {len(TEMPLATES) * len(CASES) - n_ok} raised")


if __name__ == "__main__":
    main()
