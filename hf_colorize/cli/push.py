"""`hf-colorize push --repo-id USER/NAME`: publish a model folder to the Hub in one commit
(`hub.push.push_to_hub`); `--dry-run OUT_DIR` writes the upload folder and uploads nothing."""


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: the embedded default model)")
    parser.add_argument("--repo-id", "--hub-model-id", dest="repo_id", required=True, metavar="USER/NAME",
                        help="target Hub repository")
    parser.add_argument("--private", "--hub-private", dest="private", action="store_true",
                        help="create the repository as private")
    parser.add_argument("--dry-run", default=None, metavar="OUT_DIR",
                        help="write the upload folder here (new or empty) and upload nothing")
    parser.add_argument("--eval-json", default=None, help="results of `hf-colorize evaluate --json` for the card")
    parser.add_argument("--license", default=None, help="Hub license id (default: from the training data)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")


def run(args) -> int:
    import hf_colorize
    from hf_colorize.hub.push import check_dry_run_dir, push_to_hub, validate_repo_id

    validate_repo_id(args.repo_id)  # UsageError (exit 2) before any work
    if args.dry_run is not None:
        check_dry_run_dir(args.dry_run)
    result = push_to_hub(
        args.model or hf_colorize.DEFAULT_MODEL, args.repo_id, private=args.private, token=args.token,
        eval_results=args.eval_json, dry_run_dir=args.dry_run, commit_message=args.commit_message,
        license=args.license,
    )
    if args.dry_run is not None:
        print(f"wrote the upload folder for {args.repo_id} to {result} (nothing uploaded)")
    else:
        print(f"pushed {args.repo_id}: {result}")
    return 0
