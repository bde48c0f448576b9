"""The embedded default model's own tooling: its dataset of drawn scenes, its architecture, training and
evaluation. A tool outside the runtime: `dreamworld` never imports it (it only loads the weights it made).

    python -m embedded_model.train --out runs/embedded --resume     # `make model`
    python -m embedded_model.evaluate                               # what the shipped weights draw
"""
