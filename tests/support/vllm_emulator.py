"""Test support: a vLLM-like chat-completions endpoint over an in-process MLLM, as an httpx transport.

It answers what :meth:`mllm_ood.mllm.families.endpoint.EndpointModel.score_choices` asks of vLLM: ``usage.prompt_tokens``,
and with ``prompt_logprobs: 0`` one ``{token_id: {"logprob": ...}}`` per prompt position (``None`` first),
honouring ``add_generation_prompt`` and ``continue_final_message`` as vLLM does (both through the model's
own chat template). No network: it checks the client's arithmetic and token alignment against the
in-process model's own scoring, not vLLM itself.
"""

from __future__ import annotations

import base64
import io
import json

import httpx


def _decode(url: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def transport(mllm) -> httpx.MockTransport:
    import torch

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        images, messages = [], []
        for m in body["messages"]:
            parts = [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else []
            for p in [] if isinstance(m["content"], str) else m["content"]:
                if p["type"] == "image_url":
                    images.append(_decode(p["image_url"]["url"]))
                    parts.append({"type": "image"})
                else:
                    parts.append({"type": "text", "text": p["text"]})
            messages.append({"role": m["role"], "content": parts})
        text = mllm.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=body.get("add_generation_prompt", True),
            continue_final_message=body.get("continue_final_message", False))
        enc = mllm.processor(text=[text], images=images or None, return_tensors="pt")
        ids = enc["input_ids"][0]
        reply = {"id": "emu", "object": "chat.completion",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}],
                 "usage": {"prompt_tokens": int(len(ids)), "completion_tokens": 1}}
        if body.get("prompt_logprobs") is not None:
            with torch.no_grad():
                logits = mllm.model(**enc).logits[0].float()
            lp = torch.log_softmax(logits[:-1], -1)
            reply["prompt_logprobs"] = [None] + [{str(int(t)): {"logprob": float(lp[i, t]), "rank": 1}}
                                                 for i, t in enumerate(ids[1:])]
        return httpx.Response(200, json=reply)

    return httpx.MockTransport(handler)
