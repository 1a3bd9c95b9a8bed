import ArgumentParser

/// Every top-level subcommand, one per line (each area adds its own line).
let commandRegistry: [any ParsableCommand.Type] = [
    Make.self,
    Plan.self,
    Status.self,
    Clean.self,
    Boards.self,
    UpdateLocks.self,
    BoardCommand.self,
    RootfsCommand.self,
    Mkfs.self,
    ImageCommand.self,
    InspectCommand.self,
    BundleCommand.self,
    TestCommand.self,
    ArtifactsCommand.self,
    MergeKconfig.self,
    VerifyKconfig.self,
]
