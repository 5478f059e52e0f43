@echo off
rem Registers Windows Task Scheduler tasks for kvstore (run from an elevated prompt).
rem   kvstore\kv-sweeper : kv-sweeper --once every minute (the cron form of the sweeper)
rem   kvstore\kv-server  : kv-server at system start (optional; see the end of this file)
rem Edit the two paths below first. Both tasks run as SYSTEM; to use your own account,
rem replace "/RU SYSTEM" by "/RU DOMAIN\user /RP *" (it asks for the password).
rem
rem Check:   schtasks /Query /TN "kvstore\kv-sweeper" /V /FO LIST
rem Run now: schtasks /Run /TN "kvstore\kv-sweeper"
rem Remove:  schtasks /Delete /TN "kvstore\kv-sweeper" /F

setlocal
set "KV_HOME=C:\Program Files\kvstore"
set "KV_DATA=C:\ProgramData\kvstore"

if not exist "%KV_DATA%" mkdir "%KV_DATA%"

schtasks /Create /F /TN "kvstore\kv-sweeper" /SC MINUTE /MO 1 /RU SYSTEM ^
  /TR "\"%KV_HOME%\kv-sweeper.exe\" --once --database-url \"%KV_DATA%\kv.sqlite3\""
if errorlevel 1 exit /b 1

rem kv-server at start-up. Task Scheduler's "End" kills the process without Ctrl+C, so
rem in-flight requests are cut off; stop it with Ctrl+C in a console when that matters.
rem Remove "rem " from the next two lines to register it.
rem schtasks /Create /F /TN "kvstore\kv-server" /SC ONSTART /RU SYSTEM ^
rem   /TR "\"%KV_HOME%\kv-server.exe\" --bind 127.0.0.1:8000 --database-url \"%KV_DATA%\kv.sqlite3\""

endlocal
