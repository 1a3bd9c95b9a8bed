import ArgumentParser

/// Every top-level subcommand, one per line (each area adds its own line).
let commandRegistry: [any ParsableCommand.Type] = [
    MergeKconfig.self,
    VerifyKconfig.self,
]
