"""Chat templates for the GGUF tests: real-world shapes that must come out clean, and escapes that must not.

The clean ones follow the templates shipped with Llama 3.1, Qwen 2.5 (ChatML with tools), Mistral
Instruct and a transformers template with macros and ``{% generation %}``. The hostile ones are never
rendered anywhere: they are only parsed by the analyser.
"""

# ruff: noqa: E501 - the templates keep the long lines of the originals they follow

from __future__ import annotations

LLAMA3 = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CHATML = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_user=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}{% set ns.last_user = loop.index0 %}{% endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- if '</think>' in content %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>' + message.role }}
        {%- if content %}{{- '\\n' + content }}{%- endif %}
        {%- for tool_call in message.tool_calls | default([]) %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or messages[loop.index0 - 1].role != "tool" %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != "tool" %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
    {%- if loop.index0 > ns.last_user + 1000 %}{% break %}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content']|trim + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

MACROS = """{%- macro render(content) -%}
    {%- if content is string -%}{{ content | trim }}
    {%- else -%}{%- for part in content if part.type == 'text' -%}{{ part.text }}{%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
    {{- '<start_of_turn>' + ('model' if message.role == 'assistant' else message.role) + '\\n' -}}
    {%- if message.role == 'assistant' -%}
        {%- generation -%}{{ render(message.content) }}{%- endgeneration -%}
    {%- else -%}{{ render(message.content) | replace('<start_of_turn>', '') }}{%- endif -%}
    {{- '<end_of_turn>\\n' -}}
    {%- if message.content is not string and message.content | selectattr('type', 'equalto', 'image') | list | length > 8 -%}
        {%- continue -%}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}
"""

IDIOMS = """{%- set tools_seen = namespace(value=[]) -%}
{%- for message in messages if message.get('tools') -%}
    {%- for tool in message.tools -%}{%- set _ = tools_seen.value.append(tool.function if tool.get('function') else tool) -%}{%- endfor -%}
{%- endfor -%}
{%- for key, value in (messages[0].get('metadata') or {}).items() -%}{{ '{}: {}\n'.format(key, value) }}{%- endfor -%}
{{- 'Write code that checks if __name__ == "__main__".' if messages | length > 100 else '' -}}
{%- for i in range(messages | length - 1, -1, -1) -%}{{ messages[i].content[:-1] | string | upper }}{%- endfor -%}
{{- tools_seen.value | map(attribute='name') | join(', ') }}{{- messages[0]['_meta'] | default('') }}{{- tools_seen.value | tojson(ensure_ascii=False) -}}
"""

CLEAN = {"llama3": LLAMA3, "chatml": CHATML, "mistral": MISTRAL, "macros": MACROS, "idioms": IDIOMS}

CVE_2024_34359 = (
    '{% for x in ().__class__.__base__.__subclasses__() %}{% if "warning" in x.__name__ %}'
    "{{ x()._module.__builtins__['__import__']('os').popen(\"true\") }}{% endif %}{% endfor %}"
)

MALICIOUS = {
    "cve-2024-34359": CVE_2024_34359,
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ lipsum.__globals__['os'].popen('true').read() }}",
    "cycler-init": "{{ cycler.__init__.__globals__.os.popen('true') }}",
    "item-dunder": "{{ messages['__class__'] }}",
    "concat-key": "{{ messages['__cla' ~ 'ss__'] }}",
    "repeat-key": "{{ messages['_' * 2 + 'class' + '_' * 2] }}",
    "join-key": "{{ messages[['__cla', 'ss__'] | join] }}",
    "attr-filter": "{{ messages | attr('__class__') }}",
    "map-attribute": "{{ messages | map(attribute='__class__.__name__') | list }}",
    "format-string": "{{ '{0.__class__.__init__.__globals__}'.format(messages) }}",
    "namespace-dunder": "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    "frame": "{% for x in range(1) %}{{ loop.gi_frame.f_globals }}{% endfor %}",
    "mro-method": "{{ (1).__class__.mro() }}",
    "keyword": "{{ namespace(__init__=1) }}",
}

SUSPICIOUS = {
    "unknown-method": "{{ messages.pop() }}",
    "unknown-global": "{{ open('x') }}",
    "unknown-filter": "{{ messages | shell }}",
    "unknown-test": "{% if messages is evil %}x{% endif %}",
    "include": "{% include 'other.jinja' %}",
    "private": "{{ messages._private }}",
    "built-key": "{% set k = 'clas' %}{{ messages[k ~ 's'] }}",
    "dunder-fragment": "{% set a = '__cla' %}{{ a }}",
    "syntax-error": "{% for message in messages %}{{ message.content }",
    "deep": "{{ " + "(" * 20000 + "1" + ")" * 20000 + " }}",
    "computed-callable": "{{ messages[0]() }}",
    "format-lookup": "{{ '{0.content}'.format(messages[0]) }}",
    "format-dynamic": "{{ messages[0].content.format(1) }}",
}
