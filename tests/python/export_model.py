"""Export a response model from PyTorch in explant's format (the README's example).

Usage: python export_model.py OUT_DIR

Writes OUT_DIR/my_model.pt (TorchScript) and OUT_DIR/my_model.json (names in input
order and one check case). `crates/explant-torch/tests/python_export.rs` loads the
files this script produced (kept in tests/data/) with explant.
"""
import json
import sys
from pathlib import Path

import torch


class Response(torch.nn.Module):
    def __init__(self, genes, ligands, types):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2 * genes + ligands + types, 64),
                                       torch.nn.Tanh(), torch.nn.Linear(64, genes))

    def forward(self, expression, sensed, contact, cell_type_onehot):
        return self.net(torch.cat([expression, sensed, contact, cell_type_onehot], dim=1))


out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
torch.manual_seed(0)
genes, ligands, types = ["WNT3A", "FZD7"], ["WNT3A"], ["organiser", "responder"]
model = torch.jit.script(Response(len(genes), len(ligands), len(types)).eval())
model.save(str(out / "my_model.pt"))
x, s, c = torch.tensor([[0.5, 1.0]]), torch.tensor([[0.2]]), torch.tensor([[0.0, 0.0]])
t = torch.tensor([[0.0, 1.0]])
with torch.no_grad():
    rate = model(x, s, c, t)[0].tolist()
json.dump({"format": "explant-response-model", "version": 1, "genes": genes,
           "ligands": ligands, "cell_types": types, "contract": "dx/dt per minute",
           "check": {"expression": [0.5, 1.0], "sensed": [0.2], "contact": [0.0, 0.0],
                     "cell_type": 1, "output": rate}},
          open(out / "my_model.json", "w"), indent=1)
print("wrote", out / "my_model.pt", "and", out / "my_model.json", "with torch", torch.__version__)
