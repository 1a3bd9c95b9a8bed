import Basics
import Boards
import Foundation
import StageRunner

/// Everything a stage factory needs to declare a stage for a board.
public struct PipelineContext: Sendable {
    public let board: Board
    public let project: Project
    public let buildDir: BuildDirectory
    /// SOURCE_DATE_EPOCH (or 0 when unset): the single clock for every artifact.
    public let epoch: Int64

    let tools: ToolVersions

    /// `tool --version`'s first line, folded into fingerprints of stages that run the tool.
    public func toolVersion(_ tool: String) -> String { tools.version(of: tool) }

    /// Board keys rendered as fingerprint text.
    public func keys(_ names: [String]) -> [String: String] {
        var out: [String: String] = [:]
        for n in names {
            if n.hasSuffix(".*") {
                let prefix = String(n.dropLast(1))
                for (k, v) in board.values where k.hasPrefix(prefix) { out[k] = v.value.canonical }
            } else {
                out[n] = board.values[n].map { $0.value.canonical } ?? "<unset>"
            }
        }
        return out
    }
}

/// One entry of the stage table: a named stage kind that knows whether it applies to a
/// board and how to declare it. Like genimage's image handlers, each kind lives in its
/// own file under Stages/ and is listed once in `Pipeline.table`.
public struct StageKind: Sendable {
    public var name: String
    public var summary: String
    /// Which issue/area owns the stage (shown for placeholders).
    public var applies: @Sendable (Board) -> Bool
    public var make: @Sendable (PipelineContext) throws -> Stage
}

public enum Pipeline {
    /// The code that makes every output, folded into every fingerprint as a tool: a
    /// different osbuild binary may write different bytes from the same inputs, so an
    /// upgrade (or a rebuild of osbuild with changed code) reruns the stages once.
    public static let implementationIdentity = "\(OSBuildVersion.string) (build \(ExecutableIdentity.buildID.prefix(16)))"

    public static let table: [StageKind] = [
        KernelConfigStage.kind,
        KernelStage.kind,
        RootfsStage.kind,
        RootfsImageStage.kind,
        InitramfsStage.kind,
        KernelImageStage.kind,
        BootloaderStage.kind,
        DiskStage.kind,
        BundleStage.kind,
    ]

    public static func stages(for board: Board, project: Project, buildDir: BuildDirectory) throws -> [Stage] {
        let tools = ToolVersions(cacheFile: project.downloadCache + "/tool-versions")
        defer { tools.save() }
        let ctx = PipelineContext(board: board, project: project, buildDir: buildDir, epoch: (try BuildClock.sourceDateEpoch()) ?? 0, tools: tools)
        let kinds = table.filter { $0.applies(board) }
        let present = Set(kinds.map(\.name))
        return try kinds.map { kind in
            var s = try kind.make(ctx)
            // Optional upstream stages (e.g. kernel-config for prebuilt kernels) drop out.
            s.dependencies = s.dependencies.filter(present.contains)
            s.inputs.tools["osbuild"] = implementationIdentity
            return s
        }
    }

    public static func runner(for board: Board, project: Project, outputDir: String?) throws -> StageRunner {
        let bd = project.buildDirectory(board: board.id, override: outputDir)
        return try StageRunner(stages: try stages(for: board, project: project, buildDir: bd), buildDir: bd, downloadCache: project.downloadCache)
    }
}
