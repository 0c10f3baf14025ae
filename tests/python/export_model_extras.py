"""Export a response model with the optional outputs, returned as a tuple.

Usage: python export_model_extras.py OUT_DIR

Writes OUT_DIR/extras_model.pt and .json for the names of scenes/default.toml: no
expression change, secretion of 0.5 amount/min of WNT3A by organisers, and fate scores
(an apoptosis hazard of 0.01/min and half-speed cycling) for responders.
`crates/explant-torch/tests/python_export.rs` loads the files (kept in tests/data/).
"""
import json
import sys
from pathlib import Path
from typing import Tuple

import torch


class Response(torch.nn.Module):
    def forward(self, expression: torch.Tensor, sensed: torch.Tensor, contact: torch.Tensor,
                cell_type_onehot: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        organiser = cell_type_onehot[:, 0:1]
        responder = cell_type_onehot[:, 1:2]
        rates = torch.zeros_like(expression)
        secretion = 0.5 * organiser.expand(-1, sensed.shape[1])
        fate = torch.cat([0.01 * responder, 1.0 - 0.5 * responder], dim=1)
        return rates, secretion, fate


out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
genes = ["WNT3A", "FZD7", "AXIN2", "LGR5", "DLL1", "NOTCH1", "HES1"]
ligands, types = ["WNT3A"], ["organiser", "responder"]
model = torch.jit.script(Response().eval())
model.save(str(out / "extras_model.pt"))
x, s, c = torch.zeros(1, len(genes)), torch.zeros(1, 1), torch.zeros(1, len(genes))
t = torch.tensor([[0.0, 1.0]])
with torch.no_grad():
    rates, secretion, fate = model(x, s, c, t)
json.dump({"format": "explant-response-model", "version": 1, "genes": genes, "ligands": ligands,
           "cell_types": types, "secretion": True, "fate": True,
           "contract": "rates, secretion [N,L] amount/min, fate [N,2] (hazard 1/min, progression)",
           "check": {"expression": [0.0] * len(genes), "sensed": [0.0], "contact": [0.0] * len(genes),
                     "cell_type": 1, "output": rates[0].tolist(), "secretion": secretion[0].tolist(),
                     "fate": fate[0].tolist()}},
          open(out / "extras_model.json", "w"), indent=1)
print("wrote", out / "extras_model.pt", "with torch", torch.__version__)
