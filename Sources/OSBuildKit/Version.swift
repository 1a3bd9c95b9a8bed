public enum OSBuildVersion {
    public static let string = "0.1.0"
}
