import Testing
import StageRunner

// Replaced by real tests when the module lands.
@Test func StageRunnerModuleLinks() { _ = StageRunnerModule.self }
