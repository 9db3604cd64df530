"""The query of a lineage page or graph fragment: which node, which way, how far, which types."""

from __future__ import annotations

from django import forms

from lineage.nodes import NODE_MODELS, NodeRef
from lineage.queries import MAX_DEPTH


class GraphQueryForm(forms.Form):
    node = forms.CharField(max_length=120, help_text='"<type>:<id>", e.g. "dataset_version:3"')
    direction = forms.ChoiceField(
        choices=[("both", "both"), ("upstream", "upstream"), ("downstream", "downstream")], required=False
    )
    depth = forms.IntegerField(min_value=1, max_value=MAX_DEPTH, required=False)
    types = forms.MultipleChoiceField(choices=[(t, t.replace("_", " ")) for t in NODE_MODELS], required=False)
    expand = forms.CharField(required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Built per form: node types added after import (OpenLineage's) are choices too.
        choices = [(t, t.replace("_", " ")) for t in NODE_MODELS]
        self.fields["types"].choices = choices  # type: ignore[attr-defined]

    def clean_node(self) -> NodeRef:
        try:
            return NodeRef.parse(self.cleaned_data["node"].strip())
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_direction(self) -> str:
        return self.cleaned_data["direction"] or "both"

    def clean_depth(self) -> int:
        return self.cleaned_data["depth"] or 3

    def expanded(self) -> list[NodeRef]:
        """The nodes "+" asked to open (``expand`` may repeat); unparsable keys are refused."""
        keys = self.data.getlist("expand") if hasattr(self.data, "getlist") else []
        refs = []
        for key in keys[:50]:
            try:
                refs.append(NodeRef.parse(key))
            except ValueError as exc:
                self.add_error("expand", str(exc))
        return refs
