import ArgumentParser

/// Every top-level subcommand, one per line (each area adds its own line).
let commandRegistry: [any ParsableCommand.Type] = [
    Erofs.self,  // TEMPORARY (erofs worktree): the lead moves this under `mkfs`.
]
