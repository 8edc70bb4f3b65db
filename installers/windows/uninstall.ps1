<#
.SYNOPSIS
Stops and removes the updateagent service and its program files.

.DESCRIPTION
Run from an Administrator PowerShell:

    powershell -ExecutionPolicy Bypass -File .\uninstall.ps1 [-Purge]

Stops and unregisters the service (`updateagent uninstall`) and removes
-InstallDir. The config and the agent's data (its journal and credential)
in the config's folder stay unless -Purge is given. The application the
agent managed (its install_dir) is not touched.
#>
[CmdletBinding()]
param(
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'updateagent'),
    [string]$Config = (Join-Path $env:ProgramData 'updateagent\agent.toml'),
    [switch]$Purge
)
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Write-Error 'Removing a service needs an Administrator PowerShell: start one with "Run as administrator" and run this script again.'
    exit 1
}

$exe = Join-Path $InstallDir 'updateagent.exe'
if (Test-Path $exe) {
    & $exe uninstall
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}
if (Test-Path $InstallDir) {
    Remove-Item -Recurse -Force -Path $InstallDir
}
$configDir = Split-Path -Parent $Config
if ($Purge) {
    if (Test-Path $configDir) { Remove-Item -Recurse -Force -Path $configDir }
    Write-Host "updateagent removed, with its config and data ($configDir)."
} else {
    Write-Host "updateagent removed; its config and data stay in $configDir (run with -Purge to remove them)."
}
