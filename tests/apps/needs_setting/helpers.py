import os

SETTING = os.environ["MISSING_SETTING"]
