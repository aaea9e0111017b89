"""Kubernetes' name rules, in one place: what the API server refuses, the config refuses first.

Three rules cover every name kfp-yolo writes (k8s.io/apimachinery validation):
- DNS-1123 label: namespaces, Services, most object names, a node pool's name;
- DNS-1123 subdomain: Secrets, service accounts, PriorityClasses, LocalQueues;
- label value: what a label holds (a queue name is also the value of kueue's queue label).

Each check returns None or the rule as a phrase ("1-63 lower-case letters, ..."), so a caller
writes its own sentence around the key and the value.
"""

from __future__ import annotations

import re

from kfp_yolo.components.errors import UserError

__all__ = ["DNS_LABEL", "DNS_SUBDOMAIN", "LABEL_VALUE", "MODEL_NAME", "NameRule", "check",
           "label_value"]


class NameRule:
    """One naming rule: a pattern, a length limit and the sentence fragment that states both."""

    def __init__(self, pattern: str, max_len: int, min_len: int, text: str) -> None:
        self.pattern = re.compile(pattern)
        self.max_len, self.min_len, self.text = max_len, min_len, text

    def problem(self, value: object) -> str | None:
        """None when value follows the rule, else the rule (after its length, when too long)."""
        if not isinstance(value, str):
            return f"not text; {self.text}"
        if len(value) > self.max_len:
            return f"{len(value)} characters long; {self.text}"
        if len(value) < self.min_len or not self.pattern.fullmatch(value):
            return self.text
        return None

    def matches(self, value: object) -> bool:
        return self.problem(value) is None


DNS_LABEL = NameRule(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", 63, 1,
                     "a Kubernetes name is 1-63 lower-case letters, digits or '-', starting and "
                     "ending with a letter or digit")
DNS_SUBDOMAIN = NameRule(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                         253, 1,
                         "a Kubernetes object name is 1-253 lower-case letters, digits, '-' or "
                         "'.', starting and ending with a letter or digit")
LABEL_VALUE = NameRule(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", 63, 0,
                       "a Kubernetes label value is at most 63 letters, digits, '-', '_' or '.', "
                       "starting and ending with a letter or digit")

MODEL_NAME = NameRule(DNS_LABEL.pattern.pattern, 40, 1,
                      "a run and model name is 1-40 lower-case letters, digits or '-', starting "
                      "and ending with a letter or digit (a DNS-1123 label with room for the "
                      "suffixes of job and pod names)")


def check(rule: NameRule, key: str, value: str) -> None:
    """Raises UserError "key='value' is invalid: <the rule>." when value breaks rule."""
    problem = rule.problem(value)
    if problem is not None:
        raise UserError(f"{key}={value!r} is invalid: {problem}.")


def label_value(text: str, default: str = "run") -> str:
    """text made into a valid label value (other characters become '-', at most 63 kept)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:LABEL_VALUE.max_len].strip("-_.") or default
    assert LABEL_VALUE.matches(value), value
    return value
