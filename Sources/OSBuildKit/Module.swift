// OSBuildKit module: see docs/architecture.md for its place in the layering.
public enum OSBuildKitModule {}
