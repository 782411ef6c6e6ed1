"""A plain TRL GRPO script that trains on a SPaCe curation with SPaCe's bandit, through the plug-in.

    space export --recipe builtin --out ./builtin-curation          # curate once, write the curation
    python examples/trl_grpo_curriculum.py --curation ./builtin-curation --model <SPACE_HOME>/models/tiny-...

It is the stock `trl.GRPOTrainer`; the lines marked `# SPaCe` (7 of them) are all the plug-in needs. The GRPO
settings mirror the builtin recipe (8 prompts x 8 rollouts per step, 24 new tokens, constant LR 1e-4, no KL),
`--epochs` x `--slots` prompt slots in all, the bandit re-planning every epoch from the previous epoch's rewards.
The reward is space's reasoning-gym verifier; any TRL reward function works the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from space.data.verifiers import get_verifier
from space.integrations.trl import SpaceCurriculum  # SPaCe


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curation", required=True, help="a `space export` folder")
    parser.add_argument("--model", required=True, help="HF model folder (the builtin recipe's tiny model)")
    parser.add_argument("--out", default="trl-grpo-curriculum", help="where the trained model is saved")
    parser.add_argument("--epochs", type=int, default=4, help="bandit periods (the recipe's train.epochs)")
    parser.add_argument("--slots", type=int, default=512, help="prompt slots per epoch (train.slots_per_epoch)")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=24)
    parser.add_argument("--policy", default="ts_lp", help="bandit policy (space.train.bandit registry)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load(model_dir: str, seed: int):
    """(model, tokenizer, reward function): the policy in float32 and the reasoning-gym verifier as a TRL reward."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    verifier = get_verifier("reasoning_gym", extract="none")

    def accuracy(prompts, completions, completion_ids, answer, metadata, **_):
        truncated = [tokenizer.eos_token_id not in ids for ids in completion_ids]  # hit the length limit
        return verifier(completions, answer=answer, metadata=metadata, truncated=truncated)

    return model, tokenizer, accuracy


def main() -> None:
    args = parse_args()
    model, tokenizer, accuracy = load(args.model, args.seed)
    curriculum = SpaceCurriculum(args.curation, bandit={"policy": args.policy, "floor": 0.2,  # SPaCe
                                                       "lp_window": 1},  # SPaCe: the builtin recipe's bandit
                                 seed=args.seed, slots_per_epoch=args.slots)  # SPaCe
    config = GRPOConfig(
        output_dir=args.out, seed=args.seed, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
        learning_rate=1e-4, lr_scheduler_type="constant", weight_decay=0.0, beta=0.0, temperature=1.0,
        use_cpu=not torch.cuda.is_available(), bf16=False, gradient_checkpointing=False,
        logging_steps=1, save_strategy="no", report_to="none", dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = curriculum.trainer(GRPOTrainer)(  # SPaCe: the same GRPOTrainer, with SPaCe's sampler
        model=model, processing_class=tokenizer, args=config,
        train_dataset=curriculum.train_dataset(tokenizer),  # SPaCe: rows of the selected prompts
        reward_funcs=[curriculum.reward(accuracy)],  # SPaCe: rewards feed the bandit
    )
    trainer.train()
    trainer.save_model(args.out)
    shares = [{k: v for k, v in entry.items() if k.startswith("bandit/") and k.endswith("/share")}
              for entry in trainer.state.log_history if "bandit/period" in entry]
    Path(args.out, "bandit_shares.json").write_text(json.dumps(shares, indent=1))
    print(f"trained {trainer.state.global_step} steps; model and bandit_shares.json in {args.out}")


if __name__ == "__main__":
    main()
