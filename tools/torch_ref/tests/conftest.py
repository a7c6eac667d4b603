import os
import sys

# make `import torch_ref` work when pytest is started from anywhere
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
