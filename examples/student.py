"""The student from Python: build it, encode a clip, score it against class texts, save and load it.

    python examples/student.py --model ViT-B-16 --pretrained openai -o students/mine

Needs the `train` extra (torch, open_clip). `--pretrained` takes an open_clip tag or a local
checkpoint file; `none` builds random weights (what the tests do with a tiny model config).
"""

from __future__ import annotations

import argparse

import torch

from froster_edge.config import StudentConfig
from froster_edge.model.checkpoint import load_student, save_student
from froster_edge.model.factory import create_student
from froster_edge.prompts import read_class_texts


def main(argv: list[str] | None = None) -> torch.Tensor:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16", help="open_clip model name or model-config JSON")
    parser.add_argument("--pretrained", default="openai", help="open_clip tag, a local checkpoint file, or none")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--classes", default="examples/clips/classes.txt")
    parser.add_argument("-o", "--out", default="students/mine")
    args = parser.parse_args(argv)

    pretrained = None if args.pretrained == "none" else args.pretrained
    cfg = StudentConfig(model_name=args.model, pretrained=pretrained, num_frames=args.frames, image_size=args.image_size)
    student = create_student(cfg).eval()
    frames = torch.randn(2, args.frames, 3, args.image_size, args.image_size)  # (B, T, 3, H, W), CLIP-normalised
    with torch.no_grad():
        feats = student.encode_video(frames)                                    # .frames (B, T, D), .video (B, D)
        classes = student.class_embeddings(read_class_texts(args.classes))      # (C, D): 28 templates + the bare text
        logits = student.logit_scale.exp() * feats.video @ classes.T            # (B, C)
    save_student(student, args.out)                                             # model.safetensors + config.json
    again = load_student(args.out)
    print(f"logits {tuple(logits.shape)}; saved to {args.out} ({type(again).__name__})")
    return logits


if __name__ == "__main__":
    main()
