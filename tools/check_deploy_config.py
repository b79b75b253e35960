"""Checks samconfig.toml and the docs against template.yaml (run by `make lint`).

- every parameter_overrides entry is `Name=value`, with a non-empty value (SAM refuses the whole
  list otherwise, before the first --guided prompt) naming a template parameter;
- no required template parameter (no Default) is given a placeholder value (an example domain, an
  all-zero org id, REPLACE...): --guided offers a saved value as the answer, and it gets deployed;
- every stack output the docs and runbooks name (`SomethingUrl`, `...Arn`, `...Name`, `...Base`,
  "<Name output>", or `$(out Name)` in a runbook's commands) exists in the template's Outputs.
"""

import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "salesforce/README.md", "salesforce/force-app/main/default/namedCredentials/PdSync.namedCredential-meta.xml",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs/runbooks").glob("*.md"))]
# Backticked names that end like outputs but are not stack outputs (Salesforce fields, resources).
NOT_OUTPUTS = {"Account.Name"}
PLACEHOLDER = re.compile(r"example\.(com|org|net)|\.example\b|00D0{9,}|REPLACE|CHANGE-?ME|^x+$", re.IGNORECASE)


def check(root: Path = ROOT) -> list[str]:
    errors = []
    template = cfn_yaml.load(str(root / "template.yaml"))
    params = template["Parameters"]
    required = {name for name, p in params.items() if "Default" not in p}
    outputs = set(template["Outputs"])

    config = tomllib.loads((root / "samconfig.toml").read_text())
    for env, commands in config.items():
        if not isinstance(commands, dict):
            continue
        for command, section in commands.items():
            overrides = section.get("parameters", {}).get("parameter_overrides")
            if overrides is None:
                continue
            if isinstance(overrides, str):
                overrides = overrides.split()
            where = f"samconfig.toml [{env}.{command}]"
            for entry in overrides:
                name, sep, value = entry.partition("=")
                if not sep or not value:
                    errors.append(f"{where}: {entry!r} is not Name=value with a value")
                if name not in params:
                    errors.append(f"{where}: {name!r} is not a template parameter")
                elif name in required and PLACEHOLDER.search(value):
                    errors.append(f"{where}: required parameter {name} has a placeholder ({value!r}); leave it for --guided")

    for doc in DOCS:
        text = (root / doc).read_text()
        names = set(re.findall(r"`([A-Z][A-Za-z]+(?:Url|Arn|Name|Base))`", text))
        names |= set(re.findall(r"<([A-Z][A-Za-z]+) output>", text))
        names |= set(re.findall(r"stack's ([A-Z][A-Za-z]+) output", text))
        names |= set(re.findall(r"its `?([A-Z][A-Za-z]+)`? output", text))
        names |= set(re.findall(r"\$\(out ([A-Z][A-Za-z]+)\)", text))  # the runbooks' shell helper
        for name in sorted(names - NOT_OUTPUTS - set(params)):  # a parameter may end like an output
            if name not in outputs:
                errors.append(f"{doc}: names output {name}, which template.yaml does not have")
    return errors


if __name__ == "__main__":
    errs = check()
    for e in errs:
        print(e, file=sys.stderr)
    if errs:
        sys.exit(1)
    print("deploy config: samconfig.toml parameters and the outputs the docs name match template.yaml")
