<#
.SYNOPSIS
Installs updateagent as a Windows service, or upgrades it in place.

.DESCRIPTION
Run from an Administrator PowerShell in the unzipped folder:

    powershell -ExecutionPolicy Bypass -File .\install.ps1

It copies updateagent.exe to -InstallDir, and the example config to -Config
unless one is there already (an upgrade keeps it; only Administrators and
SYSTEM may read it: it holds the enroll token). Once the config passes
`updateagent check-config`, it registers and starts the service with
`updateagent install --config ...` (the Windows Service Control Manager,
service name updateagent, automatic delayed start); a service already
installed is stopped before its binary is replaced and started again.
With the example config it stops and says what to fill in: edit the
config, then run it again.
#>
[CmdletBinding()]
param(
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'updateagent'),
    [string]$Config = (Join-Path $env:ProgramData 'updateagent\agent.toml')
)
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Write-Error 'Installing a service needs an Administrator PowerShell: start one with "Run as administrator" and run this script again.'
    exit 1
}

$exe = Join-Path $InstallDir 'updateagent.exe'
$svc = Get-Service -Name 'updateagent' -ErrorAction SilentlyContinue
if ($svc -and $svc.Status -ne 'Stopped') {
    Stop-Service -Name 'updateagent'
}
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Copy-Item -Path (Join-Path $PSScriptRoot 'updateagent.exe') -Destination $exe -Force

$configDir = Split-Path -Parent $Config
if (-not (Test-Path $Config)) {
    New-Item -ItemType Directory -Force -Path $configDir | Out-Null
    # SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) only, inherited
    # by the config and the agent's data dir below it.
    & icacls.exe $configDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
    Copy-Item -Path (Join-Path $PSScriptRoot 'agent.toml') -Destination $Config
}

& $exe check-config --config $Config
if ($LASTEXITCODE -ne 0) {
    Write-Host "updateagent is copied to $InstallDir but not started: fill in $Config (every key is explained in it), then run install.ps1 again."
    exit 1
}
if ($svc) {
    & $exe start
} else {
    & $exe install --config $Config
}
exit $LASTEXITCODE
