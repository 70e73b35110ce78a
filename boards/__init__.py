"""Board definitions (the KV260 first): platform, block design, constraints, deploy bundle."""
