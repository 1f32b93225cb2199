"""Paper B's scenario grids. Each grid module provides the responses table of its scenarios (and, with
images, the images); :mod:`.analysis` analyses any of them the same way (:func:`.analysis.analyse_grid`):

- :mod:`.digits`: the embedded digits world (a synthetic and a natural grid), answered by the model under study;
- :mod:`.hub`: paper B's shifted LLaVA-Bench sets on the hub, answered by a hub MLLM (paper profile);
- :mod:`.llava_bench`: the shipped answers of two LLaVA models to paper B's scenarios (text only).
"""
